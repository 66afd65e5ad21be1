//! Runs, newest first: filter by workflow, state, trigger and time range (kept in the URL, so a
//! filtered list can be linked to), page back in time, and cancel or rerun several at once.

use std::collections::BTreeSet;

use api_types::Run;
use chrono::{DateTime, NaiveDate, Utc};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_query_map};
use model::{Action, Object, RunId};

use crate::api::{RunFilter, RunOp, list_runs, operate_run};
use crate::components::{Ask, ConfirmDialog, ErrorNotice, StateBadge, use_tenant};
use crate::i18n::{k, t, tr, use_prefs};

const PAGE: i64 = 50;

fn day(s: &str) -> Option<DateTime<Utc>> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .or_else(|| s.parse::<DateTime<Utc>>().ok())
}

#[component]
pub fn RunsPage() -> impl IntoView {
    let tenant = use_tenant();
    let lang = move || use_prefs().get().lang;
    let query = use_query_map();
    let navigate = use_navigate();
    let q = move |k: &str| query.read().get(k).unwrap_or_default();
    let filter = Memo::new(move |_| RunFilter {
        workflow: Some(q("workflow")).filter(|s| !s.is_empty()),
        state: Some(q("state")).filter(|s| !s.is_empty()),
        trigger: Some(q("trigger")).filter(|s| !s.is_empty()),
        since: day(&q("since")),
        until: day(&q("until")).map(|d| if q("until").len() == 10 { d + chrono::Duration::days(1) } else { d }),
        before: None,
        limit: Some(PAGE),
    });
    // Pages already loaded beyond the first: each starts before the previous one's last run.
    let before = RwSignal::new(None::<DateTime<Utc>>);
    let refresh = RwSignal::new(0u32);
    let runs = Resource::new(
        move || (tenant.slug.get(), filter.get(), before.get(), refresh.get()),
        |(t, mut f, before, _)| {
            f.before = before;
            list_runs(t, f)
        },
    );
    #[cfg(feature = "hydrate")]
    {
        let handle = set_interval_with_handle(
            move || {
                if before.get_untracked().is_none() {
                    refresh.update(|n| *n += 1)
                }
            },
            std::time::Duration::from_secs(5),
        )
        .ok();
        on_cleanup(move || {
            if let Some(h) = handle {
                h.clear()
            }
        });
    }
    let set_param = Callback::new(move |(k, v): (&'static str, String)| {
        let mut pairs: Vec<(String, String)> =
            ["workflow", "state", "trigger", "since", "until"].iter().map(|k| (k.to_string(), q(k))).collect();
        for p in &mut pairs {
            if p.0 == k {
                p.1 = v.clone();
            }
        }
        let qs: Vec<String> = pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", crate::components::urlencode(&v)))
            .collect();
        before.set(None);
        navigate(&format!("/t/{}/runs?{}", tenant.slug.get_untracked(), qs.join("&")), Default::default());
    });
    let selected = RwSignal::new(BTreeSet::<RunId>::new());
    let ask = RwSignal::new(None::<Ask>);
    let bulk_error = RwSignal::new(None);
    let may_operate = move || tenant.may(Object::Run, Action::Execute);
    let bulk = move |op: RunOp, title: &'static str, yes: &'static str| {
        let ids: Vec<RunId> = selected.get_untracked().into_iter().collect();
        if ids.is_empty() {
            return;
        }
        let body = format!("{} {}", ids.len(), tr(lang(), "runs are affected."));
        ask.set(Some(Ask {
            title,
            body,
            yes,
            on_yes: Callback::new(move |()| {
                let (ids, op, slug) = (ids.clone(), op.clone(), tenant.slug.get_untracked());
                leptos::task::spawn_local(async move {
                    for id in ids {
                        if let Err(e) = operate_run(slug.clone(), id, op.clone()).await {
                            bulk_error.set(Some(e));
                        }
                    }
                    selected.set(BTreeSet::new());
                    refresh.update(|n| *n += 1);
                });
            }),
        }));
    };

    view! {
        <Title text=t("Runs")/>
        <h1>{t("Runs")}</h1>
        <form class="filters" role="search" on:submit=|e| e.prevent_default()>
            <input data-test="filter-workflow" placeholder=t("Workflow (name or id)") aria-label=t("Workflow") prop:value=move || q("workflow")
                on:change=move |e| set_param.run(("workflow", event_target_value(&e)))/>
            <select data-test="filter-state" aria-label=t("State") on:change=move |e| set_param.run(("state", event_target_value(&e)))>
                <option value="">{t("Any state")}</option>
                {["queued", "running", "succeeded", "failed", "cancelled"].into_iter().map(|s| view! {
                    <option value=s selected=move || q("state") == s>{move || tr(lang(), crate::components::state_label(s))}</option>
                }).collect_view()}
            </select>
            <select data-test="filter-trigger" aria-label=t("Trigger") on:change=move |e| set_param.run(("trigger", event_target_value(&e)))>
                <option value="">{t("Any trigger")}</option>
                {["schedule", "manual", "api", "backfill", "webhook", "event", "sub_workflow"].into_iter().map(|s| view! {
                    <option value=s selected=move || q("trigger") == s>{s}</option>
                }).collect_view()}
            </select>
            <label class="inline">{t("From")}<input type="date" prop:value=move || q("since") on:change=move |e| set_param.run(("since", event_target_value(&e)))/></label>
            <label class="inline">{t("To")}<input type="date" prop:value=move || q("until") on:change=move |e| set_param.run(("until", event_target_value(&e)))/></label>
        </form>
        <Show when=move || may_operate() && selected.with(|s| !s.is_empty())>
            <div class="bulkbar" data-test="bulk">
                <span>{move || selected.with(BTreeSet::len)}" "{t("selected")}</span>
                <button class="button danger" data-test="bulk-cancel" on:click=move |_| bulk(RunOp::Cancel, k("Cancel these runs?"), k("Cancel the runs"))>{t("Cancel")}</button>
                <button class="button" data-test="bulk-rerun" on:click=move |_| bulk(RunOp::Rerun, k("Rerun these runs?"), k("Rerun"))>{t("Rerun")}</button>
                <button class="button" data-test="bulk-rerun-failed" on:click=move |_| bulk(RunOp::RerunFailed, k("Rerun the failed tasks of these runs?"), k("Rerun failed tasks"))>{t("Rerun failed")}</button>
            </div>
        </Show>
        {move || bulk_error.get().map(|e| view! { <ErrorNotice error=e/> })}
        <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <div class="empty">
                            <p>{t("No runs match.")}</p>
                            <p class="muted">{t("Runs appear here, newest first, as soon as a workflow is triggered or scheduled.")}</p>
                        </div>
                    }.into_any(),
                    Ok(list) => {
                        let last = list.last().map(|r| r.queued_at);
                        let full = list.len() as i64 >= PAGE;
                        view! {
                            <RunTable list selected may_operate=may_operate()/>
                            <div class="pager">
                                <Show when=move || before.with(Option::is_some)>
                                    <button class="button" on:click=move |_| before.set(None)>{t("Newest")}</button>
                                </Show>
                                {full.then(|| view! { <button class="button" data-test="older" on:click=move |_| before.set(last)>{t("Older")}</button> })}
                            </div>
                        }.into_any()
                    }
                }
            })}
        </Transition>
        <ConfirmDialog ask/>
    }
    .into_any()
}

#[component]
fn RunTable(list: Vec<Run>, selected: RwSignal<BTreeSet<RunId>>, may_operate: bool) -> impl IntoView {
    let tenant = use_tenant();
    let now = crate::time::now();
    let all: Vec<RunId> = list.iter().map(|r| r.id).collect();
    let every = all.clone();
    view! {
        <table class="table" data-test="runs">
            <thead><tr>
                {may_operate.then(|| view! {
                    <th><input type="checkbox" aria-label=t("Select all")
                        prop:checked=move || selected.with(|s| !s.is_empty() && every.iter().all(|id| s.contains(id)))
                        on:change={ let all = all.clone(); move |e| if event_target_checked(&e) { selected.set(all.iter().copied().collect()) } else { selected.set(BTreeSet::new()) } }/></th>
                })}
                <th>{t("Run")}</th><th>{t("Workflow")}</th><th>{t("State")}</th><th>{t("Trigger")}</th>
                <th>{t("Logical time (UTC)")}</th><th>{t("Queued")}</th><th>{t("Duration")}</th>
            </tr></thead>
            <tbody>
                {list.into_iter().map(|r| {
                    let id = r.id;
                    let duration = r.started_at.map(|s| crate::time::duration(crate::time::between(s, r.ended_at.unwrap_or(now))));
                    view! {
                        <tr data-run=id.to_string() data-state=r.state.as_str()>
                            {may_operate.then(|| view! {
                                <td><input type="checkbox" aria-label=format!("select {id}") prop:checked=move || selected.with(|s| s.contains(&id))
                                    on:change=move |e| selected.update(|s| { if event_target_checked(&e) { s.insert(id); } else { s.remove(&id); } })/></td>
                            })}
                            <td><a href=tenant.href(&format!("/runs/{id}")) data-test="run-link"><code>{id.to_string()[..8].to_owned()}</code></a></td>
                            <td><a href=tenant.href(&format!("/workflows/{}", r.workflow_id))>{r.workflow.clone()}</a>" "<span class="muted small">"v"{r.version}</span></td>
                            <td><StateBadge state=r.state.as_str().to_owned()/></td>
                            <td class="muted">{r.trigger.clone()}</td>
                            <td>{crate::time::stamp(r.logical_time)}</td>
                            <td class="muted">{crate::time::short(r.queued_at, now)}</td>
                            <td class="muted">{duration}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
