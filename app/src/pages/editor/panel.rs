//! The side panel: the selected task's settings — its id, kind, dependencies and trigger rule,
//! retries, timeout, placement and params, and the kind's own settings through the kind's schema.
//! Problems the validator finds for the task are listed under it; a dependency on a task that
//! does not exist is underlined where it is written.
//!
//! The panel is built once per task; each field reads the document reactively, so an edit does
//! not rebuild the form (and keyboard focus stays where it is).

use std::collections::BTreeMap;

use leptos::prelude::*;
use model::workflow::TriggerRule;
use model::workflow::spec::{DurationSpec, RetriesSpec, TaskSpec, TimeoutSpec};
use serde_json::Value;

use super::schema_form::SchemaForm;
use super::state::Editor;
use super::validation::Checked;
use crate::i18n::{t, tr, use_prefs};

const RULES: [(TriggerRule, &str); 6] = [
    (TriggerRule::AllSuccess, "all_success"),
    (TriggerRule::AllDone, "all_done"),
    (TriggerRule::AllFailed, "all_failed"),
    (TriggerRule::OneSuccess, "one_success"),
    (TriggerRule::OneFailed, "one_failed"),
    (TriggerRule::NoneFailed, "none_failed"),
];

fn duration_text(d: &DurationSpec) -> String {
    match d {
        DurationSpec::Seconds(s) => format!("{s}s"),
        DurationSpec::Text(t) => t.clone(),
    }
}

fn retries_of(t: &TaskSpec) -> u32 {
    match &t.retries {
        Some(RetriesSpec::Count(n)) => *n,
        Some(RetriesSpec::Policy { count, .. }) => *count,
        None => 0,
    }
}

fn with_retries(current: Option<RetriesSpec>, n: u32) -> Option<RetriesSpec> {
    match (n, current) {
        (0, _) => None,
        (n, Some(RetriesSpec::Policy { backoff, delay, max_delay, jitter, .. })) => {
            Some(RetriesSpec::Policy { count: n, backoff, delay, max_delay, jitter })
        }
        (n, _) => Some(RetriesSpec::Count(n)),
    }
}

fn params_text(t: &TaskSpec) -> String {
    t.params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn parse_params(text: &str) -> BTreeMap<String, Value> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), Value::String(v.trim().to_owned())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

#[component]
pub fn TaskPanel(ed: Editor, id: String, checked: Memo<Checked>) -> impl IntoView {
    let lang = move || use_prefs().get().lang;
    let tid = StoredValue::new(id);
    let task = Memo::new(move |_| {
        let id = tid.get_value();
        ed.spec.with(|s| s.tasks.iter().find(|t| t.id == id).cloned())
    });
    let read = move |f: fn(&TaskSpec) -> String| task.with(|t| t.as_ref().map(f).unwrap_or_default());
    // Every edit of this task goes through here: undoable, one history step each.
    let set = move |f: Box<dyn FnOnce(&mut TaskSpec)>| {
        let id = tid.get_value();
        ed.edit(move |g| {
            if let Some(t) = g.spec.tasks.iter_mut().find(|t| t.id == id) {
                f(t);
            }
        });
    };
    let known = Memo::new(move |_| ed.spec.with(|s| s.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>()));
    let kind = Memo::new(move |_| task.with(|t| t.as_ref().map(|t| t.kind.clone()).unwrap_or_default()));
    let deps = Memo::new(move |_| task.with(|t| t.as_ref().map(|t| t.depends_on.clone()).unwrap_or_default()));
    let config = Signal::derive(move || {
        task.with(|t| match t {
            Some(t) if !t.config.is_null() => t.config.clone(),
            _ => Value::Object(Default::default()),
        })
    });
    let rename_error = RwSignal::new(None::<String>);
    let rename = move |ev| {
        let old = tid.get_value();
        let new = event_target_value(&ev).trim().to_owned();
        match ed.edit(|g| g.rename(&old, &new)) {
            Ok(()) => {
                rename_error.set(None);
                if old != new {
                    tid.set_value(new.clone());
                    ed.select_only(&new);
                }
            }
            Err(e) => rename_error.set(Some(e)),
        }
    };
    let readonly = move || !ed.editable.get();
    let problems = move || checked.with(|c| c.by_task.get(&tid.get_value()).cloned().unwrap_or_default());

    view! {
        <div class="panel-task" data-test="task-panel" data-task=move || read(|t| t.id.clone())>
            <div class="field" class:invalid=move || rename_error.with(Option::is_some)>
                <label for="task-id">{t("Task id")}</label>
                <input id="task-id" data-test="task-id" readonly=readonly prop:value=move || read(|t| t.id.clone()) on:change=rename/>
                {move || rename_error.get().map(|e| view! { <p class="field-error" role="alert">{e}</p> })}
            </div>
            <div class="field">
                <label for="task-kind">{t("Kind")}</label>
                <select id="task-kind" data-test="task-kind" disabled=readonly prop:value=move || kind.get() on:change=move |ev| {
                    let k = event_target_value(&ev);
                    let fresh = crate::graph::new_task("x", &k).config;
                    set(Box::new(move |t| { t.kind = k; t.config = fresh; }));
                }>
                    {model::workflow::TaskKind::NAMES.into_iter().map(|k| view! {
                        <option value=k selected=move || kind.get() == k>{k}</option>
                    }).collect_view()}
                </select>
            </div>
            <div class="field">
                <label for="task-description">{t("Description")}</label>
                <input id="task-description" readonly=readonly prop:value=move || read(|t| t.description.clone())
                    on:change=move |ev| { let d = event_target_value(&ev); set(Box::new(move |t| t.description = d)); }/>
            </div>
            <fieldset class="kind-config" data-test="kind-config">
                <legend>{t("Settings of this kind")}</legend>
                {move || {
                    let k = kind.get();
                    model::workflow::kinds::kind_schemas().remove(k.as_str()).map(|s| {
                        let schema = serde_json::to_value(&s).unwrap_or_default();
                        let on_change = Callback::new(move |v: Value| {
                            let empty = v.as_object().is_some_and(|o| o.is_empty());
                            set(Box::new(move |t| t.config = if empty { Value::Null } else { v }));
                        });
                        view! { <SchemaForm schema value=config readonly=readonly() on_change/> }
                    })
                }}
            </fieldset>
            <div class="field">
                <span class="label">{t("Depends on")}</span>
                <ul class="deps" data-test="depends-on">
                    <For each=move || deps.get() key=|d| d.clone() let:dep>
                        {
                            let unknown = { let d = dep.clone(); move || !known.with(|k| k.contains(&d)) };
                            let gone = StoredValue::new(dep.clone());
                            view! {
                                <li>
                                    <span class="dep" class:unknown-ref=unknown.clone()
                                        title=move || if unknown() { tr(lang(), "There is no task with this id") } else { "" }>{dep.clone()}</span>
                                    {move || (!readonly()).then(|| view! {
                                        <button class="button tiny subtle" aria-label=t("Remove dependency")
                                            on:click=move |_| { let d = gone.get_value(); set(Box::new(move |t| t.depends_on.retain(|x| *x != d))) }>"×"</button>
                                    })}
                                </li>
                            }
                        }
                    </For>
                </ul>
                {move || (!readonly()).then(|| view! {
                    <select aria-label=t("Add a dependency") data-test="add-dependency" prop:value="" on:change=move |ev| {
                        let from = event_target_value(&ev);
                        if !from.is_empty() {
                            ed.connect(&from, &tid.get_value());
                        }
                    }>
                        <option value="">{t("Add a dependency…")}</option>
                        {move || {
                            let me = tid.get_value();
                            let have = deps.get();
                            known.get().into_iter().filter(|k| *k != me && !have.contains(k)).map(|k| view! {
                                <option value=k.clone()>{k.clone()}</option>
                            }).collect_view()
                        }}
                    </select>
                })}
            </div>
            <div class="field-row">
                <div class="field">
                    <label for="task-rule">{t("Trigger rule")}</label>
                    <select id="task-rule" disabled=readonly on:change=move |ev| {
                        let v = event_target_value(&ev);
                        if let Some((r, _)) = RULES.iter().find(|(_, n)| *n == v) { let r = *r; set(Box::new(move |t| t.trigger_rule = r)); }
                    }>
                        {RULES.iter().map(|(r, n)| {
                            let r = *r;
                            view! { <option value=*n selected=move || task.with(|t| t.as_ref().is_some_and(|t| t.trigger_rule == r))>{*n}</option> }
                        }).collect_view()}
                    </select>
                </div>
                <div class="field">
                    <label for="task-priority">{t("Priority")}</label>
                    <input id="task-priority" type="number" readonly=readonly prop:value=move || read(|t| t.priority.to_string())
                        on:change=move |ev| { if let Ok(p) = event_target_value(&ev).trim().parse::<i32>() { set(Box::new(move |t| t.priority = p)) } }/>
                </div>
            </div>
            <div class="field-row">
                <div class="field">
                    <label for="task-retries">{t("Retries")}</label>
                    <input id="task-retries" type="number" min="0" readonly=readonly prop:value=move || read(|t| retries_of(t).to_string())
                        on:change=move |ev| { if let Ok(n) = event_target_value(&ev).trim().parse::<u32>() {
                            set(Box::new(move |t| t.retries = with_retries(t.retries.take(), n)))
                        } }/>
                </div>
                <div class="field">
                    <label for="task-timeout">{t("Timeout")}</label>
                    <input id="task-timeout" readonly=readonly placeholder="30m"
                        prop:value=move || read(|t| match &t.timeout { Some(TimeoutSpec::After(d) | TimeoutSpec::Policy { after: d, .. }) => duration_text(d), None => String::new() })
                        on:change=move |ev| {
                            let text = event_target_value(&ev).trim().to_owned();
                            set(Box::new(move |t| t.timeout = (!text.is_empty()).then_some(TimeoutSpec::After(DurationSpec::Text(text)))))
                        }/>
                </div>
            </div>
            <div class="field-row">
                <div class="field">
                    <label for="task-pool">{t("Pool")}</label>
                    <input id="task-pool" readonly=readonly placeholder="default" prop:value=move || read(|t| t.pool.clone().unwrap_or_default())
                        on:change=move |ev| { let p = event_target_value(&ev).trim().to_owned(); set(Box::new(move |t| t.pool = (!p.is_empty()).then_some(p))) }/>
                </div>
                <div class="field">
                    <label for="task-region">{t("Region")}</label>
                    <input id="task-region" readonly=readonly placeholder=t("any") prop:value=move || read(|t| t.region.clone().unwrap_or_default())
                        on:change=move |ev| { let r = event_target_value(&ev).trim().to_owned(); set(Box::new(move |t| t.region = (!r.is_empty()).then_some(r))) }/>
                </div>
            </div>
            <div class="field">
                <label for="task-params">{t("Params (name=value, one a line)")}</label>
                <textarea id="task-params" class="code" rows="3" readonly=readonly prop:value=move || read(params_text)
                    on:change=move |ev| { let p = parse_params(&event_target_value(&ev)); set(Box::new(move |t| t.params = p)); }></textarea>
            </div>
            <ul class="problems" data-test="task-problems">
                {move || problems().into_iter().map(|p| view! { <li class="field-error">{p}</li> }).collect_view()}
            </ul>
        </div>
    }
    .into_any()
}
