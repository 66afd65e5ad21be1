//! The trigger dialog (parameters with their defaults filled in, required ones checked) and the
//! backfill dialog (a date range, previewed as the logical times it will create).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use model::workflow::spec::ParamSpec;
use serde_json::Value;

use super::Saved;
use crate::api::{ConsoleError, create_backfill, trigger_run};
use crate::components::{ErrorNotice, Modal, use_tenant};
use crate::i18n::{k, t, tr, use_prefs};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialog {
    Trigger,
    Backfill,
}

/// A parameter's text as a value: JSON when it reads as JSON (numbers, booleans, lists, objects,
/// quoted strings), else the text itself.
pub fn param_value(text: &str) -> Value {
    serde_json::from_str::<Value>(text.trim()).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn param_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// `datetime-local` values are read as UTC (the page says so).
fn parse_local(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .map(|n| n.and_utc())
}

#[component]
pub fn DialogView(dialog: Dialog, saved: RwSignal<Option<Saved>>, close: Callback<()>) -> impl IntoView {
    view! {
        <Modal close class="wide">
            {match dialog {
                Dialog::Trigger => view! { <TriggerForm saved close/> }.into_any(),
                Dialog::Backfill => view! { <BackfillForm saved close/> }.into_any(),
            }}
        </Modal>
    }
    .into_any()
}

#[component]
fn TriggerForm(saved: RwSignal<Option<Saved>>, close: Callback<()>) -> impl IntoView {
    let tenant = use_tenant();
    let lang = move || use_prefs().get().lang;
    let navigate = use_navigate();
    // The parameters of the saved version: what a run will get.
    let params: Vec<(String, ParamSpec)> =
        saved.with_untracked(|s| s.as_ref().map(|s| s.spec.params.clone().into_iter().collect()).unwrap_or_default());
    let values: Vec<(String, bool, RwSignal<String>)> =
        params.iter().map(|(k, p)| (k.clone(), p.required(), RwSignal::new(param_text(p.default_value())))).collect();
    let values = StoredValue::new(values);
    let logical = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ConsoleError>);
    let busy = RwSignal::new(false);
    let missing = move || {
        values.with_value(|v| {
            v.iter()
                .filter(|(_, req, val)| *req && val.get().trim().is_empty())
                .map(|(k, ..)| k.clone())
                .collect::<Vec<_>>()
        })
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if !missing().is_empty() || busy.get_untracked() {
            return;
        }
        let Some(id) = saved.with_untracked(|s| s.as_ref().map(|s| s.id.clone())) else { return };
        let params: BTreeMap<String, Value> = values.with_value(|v| {
            v.iter()
                .filter(|(_, _, val)| !val.get_untracked().is_empty())
                .map(|(k, _, val)| (k.clone(), param_value(&val.get_untracked())))
                .collect()
        });
        let at = parse_local(&logical.get_untracked());
        let slug = tenant.slug.get_untracked();
        let navigate = navigate.clone();
        busy.set(true);
        leptos::task::spawn_local(async move {
            match trigger_run(slug.clone(), id, params, at, None).await {
                Ok(t) => {
                    close.run(());
                    navigate(&format!("/t/{slug}/runs/{}", t.run.id), Default::default());
                }
                Err(e) => {
                    busy.set(false);
                    error.set(Some(e));
                }
            }
        });
    };
    view! {
        <form on:submit=submit data-test="trigger-dialog">
            <h3>{t("Trigger a run")}</h3>
            {values.with_value(|v| v.is_empty()).then(|| view! { <p class="muted">{t("This workflow has no parameters.")}</p> })}
            {values.with_value(|v| v.iter().map(|(k, req, val)| {
                let (k, req, val) = (k.clone(), *req, *val);
                let id = format!("param-{k}");
                view! {
                    <div class="field" class:invalid=move || req && val.get().trim().is_empty()>
                        <label for=id.clone()>{k.clone()}{req.then_some(" *")}</label>
                        <input id=id data-param=k.clone() prop:value=move || val.get() on:input=move |e| val.set(event_target_value(&e))/>
                        {move || (req && val.get().trim().is_empty()).then(|| view! { <p class="field-error">{t("required")}</p> })}
                    </div>
                }
            }).collect_view())}
            <div class="field">
                <label for="logical-time">{t("Logical time (UTC; empty: now)")}</label>
                <input id="logical-time" type="datetime-local" prop:value=move || logical.get() on:input=move |e| logical.set(event_target_value(&e))/>
            </div>
            {move || error.get().map(|e| view! { <ErrorNotice error=e/> })}
            <div class="modal-actions">
                <button type="button" class="button" on:click=move |_| close.run(())>{t("Cancel")}</button>
                <button type="submit" class="button primary" data-test="trigger-submit" disabled=move || busy.get() || !missing().is_empty()>
                    {move || tr(lang(), if busy.get() { k("Starting…") } else { k("Start the run") })}
                </button>
            </div>
        </form>
    }
    .into_any()
}

#[component]
fn BackfillForm(saved: RwSignal<Option<Saved>>, close: Callback<()>) -> impl IntoView {
    let tenant = use_tenant();
    let lang = move || use_prefs().get().lang;
    let navigate = use_navigate();
    let start = RwSignal::new(String::new());
    let end = RwSignal::new(String::new());
    let parallelism = RwSignal::new("2".to_owned());
    let newest = RwSignal::new(false);
    let preview = RwSignal::new(None::<Vec<DateTime<Utc>>>);
    let error = RwSignal::new(None::<ConsoleError>);
    let has_schedule = saved.with_untracked(|s| s.as_ref().is_some_and(|s| s.spec.schedule.is_some()));
    let request = move |dry_run: bool| -> Result<api_types::CreateBackfill, &'static str> {
        let (Some(s), Some(e)) = (parse_local(&start.get_untracked()), parse_local(&end.get_untracked())) else {
            return Err(k("Give a start and an end."));
        };
        if e < s {
            return Err(k("The end is before the start."));
        }
        Ok(api_types::CreateBackfill {
            start: s,
            end: e,
            parallelism: parallelism.get_untracked().trim().parse().ok(),
            newest_first: newest.get_untracked(),
            params: BTreeMap::new(),
            dry_run,
        })
    };
    let local_error = RwSignal::new(None::<&'static str>);
    let run = move |dry_run: bool| {
        let req = match request(dry_run) {
            Ok(r) => r,
            Err(e) => {
                local_error.set(Some(e));
                return;
            }
        };
        local_error.set(None);
        let Some(id) = saved.with_untracked(|s| s.as_ref().map(|s| s.id.clone())) else { return };
        let slug = tenant.slug.get_untracked();
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            match create_backfill(slug.clone(), id.clone(), req).await {
                Ok(b) if dry_run => {
                    error.set(None);
                    preview.set(Some(b.pending));
                }
                Ok(_) => {
                    close.run(());
                    navigate(&format!("/t/{slug}/runs?workflow={id}&trigger=backfill"), Default::default());
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let run_preview = run.clone();
    view! {
        <div data-test="backfill-dialog">
            <h3>{t("Backfill")}</h3>
            {(!has_schedule).then(|| view! { <p class="notice warn">{t("A backfill makes one run per fire of the schedule in the range; this workflow has no schedule.")}</p> })}
            <div class="form-grid">
                <div class="field">
                    <label for="bf-start">{t("From (UTC)")}</label>
                    <input id="bf-start" type="datetime-local" data-test="backfill-start" prop:value=move || start.get() on:input=move |e| { start.set(event_target_value(&e)); preview.set(None); }/>
                </div>
                <div class="field">
                    <label for="bf-end">{t("To (UTC)")}</label>
                    <input id="bf-end" type="datetime-local" data-test="backfill-end" prop:value=move || end.get() on:input=move |e| { end.set(event_target_value(&e)); preview.set(None); }/>
                </div>
                <div class="field">
                    <label for="bf-par">{t("Runs at once")}</label>
                    <input id="bf-par" type="number" min="1" prop:value=move || parallelism.get() on:input=move |e| parallelism.set(event_target_value(&e))/>
                </div>
                <div class="field">
                    <label><input type="checkbox" prop:checked=move || newest.get() on:change=move |e| newest.set(event_target_checked(&e))/>" "{t("Newest first")}</label>
                </div>
            </div>
            {move || local_error.get().map(|e| view! { <p class="field-error" role="alert">{move || tr(lang(), e)}</p> })}
            {move || error.get().map(|e| view! { <ErrorNotice error=e/> })}
            {move || preview.get().map(|times| view! {
                <div class="preview" data-test="backfill-preview">
                    <p>{times.len()}" "{move || tr(lang(), "runs, for these logical times:")}</p>
                    <ol class="fires">{times.iter().take(50).map(|t| view! { <li><code>{crate::time::stamp(*t)}</code></li> }).collect_view()}</ol>
                    {(times.len() > 50).then(|| view! { <p class="muted small">"… "{times.len() - 50}" "{move || tr(lang(), "more")}</p> })}
                </div>
            })}
            <div class="modal-actions">
                <button type="button" class="button" on:click=move |_| close.run(())>{t("Cancel")}</button>
                <button type="button" class="button" data-test="backfill-preview-button" on:click=move |_| run_preview(true)>{t("Preview")}</button>
                <button type="button" class="button primary" data-test="backfill-submit" disabled=move || preview.with(|p| p.as_ref().is_none_or(Vec::is_empty))
                    on:click=move |_| run(false)>{t("Start the backfill")}</button>
            </div>
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_text_reads_as_json_when_it_can() {
        assert_eq!(param_value("3"), Value::from(3));
        assert_eq!(param_value("eu"), Value::from("eu"));
        assert_eq!(param_value("[1, 2]"), serde_json::json!([1, 2]));
        assert_eq!(param_value("\"3\""), Value::from("3"));
        assert_eq!(parse_local("2026-05-01T10:30").map(|d| d.to_rfc3339()), Some("2026-05-01T10:30:00+00:00".into()));
    }
}
