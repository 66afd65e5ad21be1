//! The workflow's own settings: name, description, tags, owner, parameters, how many runs may be
//! active, and what a failed task does to the rest of the run.

use std::collections::BTreeMap;

use leptos::prelude::*;
use model::workflow::FailureStrategy;
use model::workflow::spec::ParamSpec;
use serde_json::Value;

use super::state::Editor;
use crate::i18n::t;

/// `name=default` lines; `name` alone is a required parameter. Values that read as JSON
/// (numbers, true/false, lists) are kept as such.
pub fn params_from_text(text: &str) -> BTreeMap<String, ParamSpec> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => {
                let v = v.trim();
                let value = serde_json::from_str::<Value>(v)
                    .ok()
                    .filter(|j| !j.is_string())
                    .unwrap_or_else(|| Value::String(v.trim_matches('"').to_owned()));
                (k.trim().to_owned(), ParamSpec::Value(value))
            }
            None => (l.to_owned(), ParamSpec::Full { default: None, description: String::new(), required: true }),
        })
        .collect()
}

pub fn params_to_text(params: &BTreeMap<String, ParamSpec>) -> String {
    params
        .iter()
        .map(|(k, p)| match p.default_value() {
            Some(Value::String(s)) => format!("{k}={s}"),
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[component]
pub fn WorkflowSettings(ed: Editor) -> impl IntoView {
    let readonly = move || !ed.editable.get();
    let read = move |f: fn(&model::workflow::WorkflowSpec) -> String| ed.spec.with(f);
    let set = move |f: Box<dyn FnOnce(&mut model::workflow::WorkflowSpec)>| {
        ed.edit(move |g| f(&mut g.spec));
    };
    view! {
        <section class="card form-grid" data-test="workflow-settings">
            <div class="field">
                <label for="wf-name">{t("Name")}</label>
                <input id="wf-name" data-test="workflow-name-input" readonly=readonly prop:value=move || read(|s| s.name.clone())
                    on:change=move |e| { let v = event_target_value(&e).trim().to_owned(); set(Box::new(move |s| s.name = v)) }/>
                <p class="hint">{t("Lowercase letters, digits, - and _, starting with a letter; unique in its project.")}</p>
            </div>
            <div class="field">
                <label for="wf-description">{t("Description")}</label>
                <input id="wf-description" readonly=readonly prop:value=move || read(|s| s.description.clone())
                    on:change=move |e| { let v = event_target_value(&e); set(Box::new(move |s| s.description = v)) }/>
            </div>
            <div class="field">
                <label for="wf-tags">{t("Tags (comma-separated)")}</label>
                <input id="wf-tags" readonly=readonly prop:value=move || read(|s| s.tags.join(", "))
                    on:change=move |e| {
                        let v: Vec<String> = event_target_value(&e).split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
                        set(Box::new(move |s| s.tags = v))
                    }/>
            </div>
            <div class="field">
                <label for="wf-owner">{t("Owner")}</label>
                <input id="wf-owner" readonly=readonly placeholder="data-team@example.com" prop:value=move || read(|s| s.owner.clone().unwrap_or_default())
                    on:change=move |e| { let v = event_target_value(&e).trim().to_owned(); set(Box::new(move |s| s.owner = (!v.is_empty()).then_some(v))) }/>
            </div>
            <div class="field">
                <label for="wf-max-active">{t("Runs active at once")}</label>
                <input id="wf-max-active" type="number" min="1" readonly=readonly placeholder="16"
                    prop:value=move || read(|s| s.max_active_runs.map(|n| n.to_string()).unwrap_or_default())
                    on:change=move |e| { let v = event_target_value(&e).trim().parse::<u32>().ok(); set(Box::new(move |s| s.max_active_runs = v)) }/>
            </div>
            <div class="field">
                <label for="wf-failure">{t("When a task fails")}</label>
                <select id="wf-failure" disabled=readonly on:change=move |e| {
                    let v = if event_target_value(&e) == "stop" { FailureStrategy::Stop } else { FailureStrategy::Continue };
                    set(Box::new(move |s| s.failure_strategy = v))
                }>
                    <option value="continue" selected=move || ed.spec.with(|s| s.failure_strategy == FailureStrategy::Continue)>{t("other branches go on")}</option>
                    <option value="stop" selected=move || ed.spec.with(|s| s.failure_strategy == FailureStrategy::Stop)>{t("stop the run")}</option>
                </select>
            </div>
            <div class="field wide">
                <label for="wf-params">{t("Parameters (name=default, one a line; a name alone is required)")}</label>
                <textarea id="wf-params" class="code" rows="4" readonly=readonly prop:value=move || read(|s| params_to_text(&s.params))
                    on:change=move |e| { let p = params_from_text(&event_target_value(&e)); set(Box::new(move |s| s.params = p)) }></textarea>
            </div>
        </section>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_read_back_as_written() {
        let p = params_from_text("region=eu\nretries=3\nday\n");
        assert_eq!(p["region"], ParamSpec::Value(Value::from("eu")));
        assert_eq!(p["retries"], ParamSpec::Value(Value::from(3)));
        assert!(p["day"].required());
        assert_eq!(params_to_text(&p), "day\nregion=eu\nretries=3");
    }
}
