//! One run, live: its graph coloured by task state and a Gantt timeline of its attempts, both
//! updated by server-sent events; the selected task's attempts (worker, times, exit code,
//! errors), outputs and log; and what an operator may do — cancel, rerun, rerun failed tasks,
//! clear a task (and what follows it), mark it succeeded or failed. Buttons for what the
//! person's role may not do are not shown (and the server refuses them anyway).

use std::collections::BTreeMap;

use api_types::{RunDetail, TaskRun};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use model::state::TaskState;
use model::{Action, Object, RunId};

use crate::api::{RunOp, get_run, get_workflow, operate_run};
use crate::components::{Ask, ConfirmDialog, ErrorNotice, StateBadge, use_tenant};
use crate::graph::{Graph, new_task};
use crate::i18n::{k, t, tr, use_prefs};
use crate::pages::editor::state::{Editor, Marks};
use crate::pages::editor::{Canvas, fit_when_shown, positions};
use crate::pages::log::LogViewer;

/// The run's graph as the editor draws it (tasks, kinds, dependencies).
fn graph_of(d: &RunDetail, layout: Option<&serde_json::Value>) -> Graph {
    let mut spec = crate::graph::from_yaml("name: run\ntasks: []\n").expect("parses");
    spec.tasks = d
        .tasks
        .iter()
        .map(|t| {
            let mut task = new_task(&t.id, &t.kind);
            task.depends_on = t.depends_on.clone();
            task
        })
        .collect();
    Graph::new(spec, positions(layout))
}

fn state_marks(d: &RunDetail) -> Marks {
    Marks {
        tasks: d.tasks.iter().map(|t| (t.id.clone(), format!("state-{}", t.state.as_str()))).collect(),
        edges: Default::default(),
    }
}

#[component]
pub fn RunPage() -> impl IntoView {
    let tenant = use_tenant();
    let params = use_params_map();
    let run_id = Memo::new(move |_| params.read().get("run").and_then(|r| r.parse::<RunId>().ok()));
    let data = Resource::new(
        move || (tenant.slug.get(), run_id.get()),
        |(t, run)| async move {
            let run = run.ok_or_else(|| crate::api::ConsoleError {
                code: "run_not_found".into(),
                message: "this is not a run id".into(),
            })?;
            let d = get_run(t.clone(), run).await?;
            let layout = get_workflow(t, d.run.workflow_id.to_string()).await.ok().and_then(|w| w.layout);
            Ok::<_, crate::api::ConsoleError>((d, layout))
        },
    );
    view! {
        <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok((d, layout)) => view! { <RunView initial=d layout/> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

#[component]
fn RunView(initial: RunDetail, layout: Option<serde_json::Value>) -> impl IntoView {
    let tenant = use_tenant();
    let lang = move || use_prefs().get().lang;
    let run_id = initial.run.id;
    let detail = RwSignal::new(initial.clone());
    let marks = Signal::derive(move || detail.with(state_marks));
    let ed = Editor::new(graph_of(&initial, layout.as_ref()), Signal::derive(|| false)).with_marks(marks);
    let svg = NodeRef::<leptos::svg::Svg>::new();
    fit_when_shown(ed, svg);
    // Live: the server sends the run again whenever it changes.
    let follow = move || {
        let url = format!("/api/v1/tenants/{}/runs/{run_id}/events", tenant.slug.get_untracked());
        crate::live::follow(&url, &["run", "end"], move |event, data| {
            if event == "run"
                && let Ok(d) = serde_json::from_str::<RunDetail>(&data)
            {
                detail.set(d);
            }
        });
    };
    follow();
    let selected = Memo::new(move |_| ed.selection.with(|s| s.first().cloned()));
    let may_operate = move || tenant.may(Object::Run, Action::Execute);
    let ask = RwSignal::new(None::<Ask>);
    let op_error = RwSignal::new(None);
    let operate = move |op: RunOp| {
        let slug = tenant.slug.get_untracked();
        leptos::task::spawn_local(async move {
            match operate_run(slug, run_id, op).await {
                Ok(d) => {
                    op_error.set(None);
                    let was_over = detail.with_untracked(|x| x.run.state.is_terminal());
                    let open_again = was_over && !d.run.state.is_terminal();
                    detail.set(d);
                    // The stream ended with the run; a rerun starts it again.
                    if open_again {
                        follow();
                    }
                }
                Err(e) => op_error.set(Some(e)),
            }
        });
    };
    let confirm = move |title: &'static str, body: String, yes: &'static str, op: RunOp| {
        ask.set(Some(Ask { title, body, yes, on_yes: Callback::new(move |()| operate(op.clone())) }));
    };
    let run = move || detail.with(|d| d.run.clone());
    let any_failed = move || {
        detail.with(|d| d.tasks.iter().any(|t| matches!(t.state, TaskState::Failed | TaskState::UpstreamFailed)))
    };
    let now = crate::time::now();

    view! {
        <Title text=move || format!("{} · {}", run().workflow, tr(lang(), "run"))/>
        <div class="page-head">
            <div>
                <a class="muted small" href=move || tenant.href(&format!("/runs?workflow={}", run().workflow_id))>{t("Runs")}" /"</a>
                <h1>
                    <a href=move || tenant.href(&format!("/workflows/{}", run().workflow_id))>{move || run().workflow}</a>
                    " " <span class="muted small">"v"{move || run().version}</span>
                </h1>
            </div>
            <span data-test="run-state"><StateBadge state=Signal::derive(move || run().state.as_str().to_owned())/></span>
            <span class="spacer"></span>
            <Show when=may_operate>
                <div class="toolbar" data-test="run-actions">
                    <Show when=move || !run().state.is_terminal()>
                        <button class="button danger" data-test="cancel-run" on:click=move |_| confirm(k("Cancel this run?"), tr(lang(), "Running tasks are stopped; tasks not started yet will not run.").to_owned(), k("Cancel the run"), RunOp::Cancel)>
                            {t("Cancel")}
                        </button>
                    </Show>
                    <Show when=move || run().state.is_terminal()>
                        <button class="button" data-test="rerun" on:click=move |_| confirm(k("Rerun every task?"), tr(lang(), "Every task runs again in this run; their earlier attempts are kept.").to_owned(), k("Rerun"), RunOp::Rerun)>
                            {t("Rerun")}
                        </button>
                        <Show when=any_failed>
                            <button class="button" data-test="rerun-failed" on:click=move |_| operate(RunOp::RerunFailed)>{t("Rerun failed")}</button>
                        </Show>
                    </Show>
                </div>
            </Show>
        </div>
        <dl class="facts">
            <div><dt>{t("Trigger")}</dt><dd>{move || run().trigger}</dd></div>
            <div><dt>{t("Logical time (UTC)")}</dt><dd>{move || crate::time::stamp(run().logical_time)}</dd></div>
            <div><dt>{t("Queued")}</dt><dd>{move || crate::time::stamp(run().queued_at)}</dd></div>
            <div><dt>{t("Duration")}</dt><dd>{move || { let r = run(); r.started_at.map(|s| crate::time::duration(crate::time::between(s, r.ended_at.unwrap_or_else(crate::time::now)))) }}</dd></div>
            <div><dt>{t("Run")}</dt><dd><code>{run_id.to_string()}</code></dd></div>
        </dl>
        {move || op_error.get().map(|e| view! { <ErrorNotice error=e/> })}
        <div class="run-body">
            <div class="canvas-wrap run-graph">
                <Canvas ed svg label=tr(lang(), "Run graph")/>
            </div>
            <Gantt detail ed now/>
        </div>
        {move || selected.get().map(|task| view! {
            <TaskDetail detail task may_operate=Signal::derive(may_operate) confirm=move |title, body, yes, op| confirm(title, body, yes, op)/>
        })}
        {move || selected.with(Option::is_none).then(|| view! { <p class="muted">{t("Select a task on the graph or the timeline to see its attempts and log.")}</p> })}
        <ConfirmDialog ask/>
    }
    .into_any()
}

/// Each task's attempts on one time axis: queued (light), then running, coloured by outcome.
#[component]
fn Gantt(detail: RwSignal<RunDetail>, ed: Editor, now: chrono::DateTime<chrono::Utc>) -> impl IntoView {
    let span = move || {
        detail.with(|d| {
            let start = d.run.queued_at;
            let mut end = d.run.ended_at.unwrap_or(start);
            for t in &d.tasks {
                for a in &t.attempts {
                    end = end.max(a.ended_at.or(a.started_at).unwrap_or(a.queued_at));
                }
            }
            if !d.run.state.is_terminal() {
                end = end.max(crate::time::now().max(now));
            }
            (start, crate::time::between(start, end).max(0.001))
        })
    };
    let pct = move |t: chrono::DateTime<chrono::Utc>| {
        let (start, total) = span();
        (crate::time::between(start, t) / total * 100.0).clamp(0.0, 100.0)
    };
    view! {
        <div class="gantt" data-test="gantt" role="table" aria-label=t("Timeline")>
            <div class="gantt-scale"><span>"0"</span><span>{move || crate::time::duration(span().1)}</span></div>
            <For each=move || detail.with(|d| d.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>()) key=|id| id.clone() let:id>
                {
                    let row = { let id = id.clone(); move || detail.with(|d| d.tasks.iter().find(|t| t.id == id).cloned()) };
                    let pick = id.clone();
                    view! {
                        <div class="gantt-row" role="row" class:selected={ let id = id.clone(); move || ed.selection.with(|s| s.contains(&id)) }
                            on:click=move |_| ed.select_only(&pick)>
                            <span class="gantt-label" role="rowheader">{id.clone()}</span>
                            <span class="gantt-track" role="cell">
                                {move || row().map(|t| t.attempts.into_iter().map(|a| {
                                    let q = pct(a.queued_at);
                                    let s = a.started_at.map(pct);
                                    let e = a.ended_at.map(pct).unwrap_or_else(|| if a.started_at.is_some() { pct(crate::time::now()) } else { q });
                                    let run_from = s.unwrap_or(e);
                                    let title = format!("#{} {} {}", a.attempt, a.state, a.worker.clone().unwrap_or_default());
                                    view! {
                                        <span class="bar queued" style=format!("left:{q:.2}%;width:{:.2}%", (run_from - q).max(0.0))></span>
                                        {s.map(|s| view! { <span class=format!("bar attempt-{}", a.state) title=title style=format!("left:{s:.2}%;width:{:.2}%", (e - s).max(0.4))></span> })}
                                    }
                                }).collect_view())}
                            </span>
                        </div>
                    }
                }
            </For>
        </div>
    }
    .into_any()
}

#[component]
fn TaskDetail(
    detail: RwSignal<RunDetail>,
    task: String,
    may_operate: Signal<bool>,
    confirm: impl Fn(&'static str, String, &'static str, RunOp) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let tenant = use_tenant();
    let lang = move || use_prefs().get().lang;
    let id = StoredValue::new(task.clone());
    let tr_ = Memo::new(move |_| detail.with(|d| d.tasks.iter().find(|t| t.id == id.get_value()).cloned()));
    let run_id = detail.with_untracked(|d| d.run.id);
    let attempt = RwSignal::new(None::<i32>);
    let attempts = move || tr_.with(|t| t.as_ref().map(|t| t.attempts.clone()).unwrap_or_default());
    // The log shown: the chosen attempt, else the latest (the viewer is rebuilt only when that changes).
    let shown = Memo::new(move |_| {
        attempt.get().or_else(|| tr_.with(|t| t.as_ref().and_then(|t| t.attempts.last().map(|a| a.attempt))))
    });
    let state = move || tr_.with(|t| t.as_ref().map(|t| t.state.as_str().to_owned()).unwrap_or_default());
    let outputs = move || tr_.with(|t| t.as_ref().map(|t: &TaskRun| t.outputs.clone()).unwrap_or_default());
    view! {
        <section class="card task-detail" data-test="task-detail" data-task=task.clone()>
            <div class="page-head">
                <h2><code>{task.clone()}</code></h2>
                <StateBadge state=Signal::derive(state)/>
                {move || tr_.with(|t| t.as_ref().and_then(|t| t.reason.clone())).map(|r| view! { <span class="muted small">{r}</span> })}
                <span class="spacer"></span>
                <Show when=move || may_operate.get()>
                    <div class="toolbar">
                        <button class="button" data-test="clear-task" on:click=move |_| confirm(k("Clear this task?"), tr(lang(), "It runs again; its earlier attempts are kept.").to_owned(), k("Clear"), RunOp::Clear { task: id.get_value(), downstream: false })>{t("Clear")}</button>
                        <button class="button" data-test="clear-downstream" on:click=move |_| confirm(k("Clear this task and everything after it?"), tr(lang(), "They run again; earlier attempts are kept.").to_owned(), k("Clear"), RunOp::Clear { task: id.get_value(), downstream: true })>{t("Clear with downstream")}</button>
                        <button class="button" data-test="mark-succeeded" on:click=move |_| confirm(k("Mark as succeeded?"), tr(lang(), "Its downstream tasks go on as if it had succeeded.").to_owned(), k("Mark succeeded"), RunOp::Mark { task: id.get_value(), state: "succeeded".into() })>{t("Mark succeeded")}</button>
                        <button class="button danger" data-test="mark-failed" on:click=move |_| confirm(k("Mark as failed?"), tr(lang(), "Its downstream tasks are treated as after a failure.").to_owned(), k("Mark failed"), RunOp::Mark { task: id.get_value(), state: "failed".into() })>{t("Mark failed")}</button>
                    </div>
                </Show>
            </div>
            <table class="table compact" data-test="attempts">
                <thead><tr><th>"#"</th><th>{t("State")}</th><th>{t("Worker")}</th><th>{t("Pool")}</th><th>{t("Started (UTC)")}</th><th>{t("Duration")}</th><th>{t("Exit code")}</th><th>{t("Error")}</th><th></th></tr></thead>
                <tbody>
                    {move || attempts().into_iter().map(|a| {
                        let n = a.attempt;
                        let dur = a.started_at.map(|s| crate::time::duration(crate::time::between(s, a.ended_at.unwrap_or_else(crate::time::now))));
                        view! {
                            <tr data-attempt=n>
                                <td>{n}</td>
                                <td><StateBadge state=a.state.clone()/></td>
                                <td>{a.worker.clone().unwrap_or_default()}</td>
                                <td class="muted">{a.pool.clone()}</td>
                                <td class="muted">{a.started_at.map(crate::time::stamp)}</td>
                                <td>{dur}</td>
                                <td>{a.exit_code}</td>
                                <td class="error-text">{a.error.clone()}{a.unschedulable.clone().map(|u| view! { <span class="notice warn small">{u}</span> })}</td>
                                <td><button class="button tiny" data-test="show-log" on:click=move |_| attempt.set(Some(n))>{t("Log")}</button></td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            {move || {
                let out: BTreeMap<String, String> = outputs();
                (!out.is_empty()).then(|| view! {
                    <h3>{t("Outputs")}</h3>
                    <table class="table compact" data-test="outputs">
                        <tbody>{out.into_iter().map(|(k, v)| view! { <tr><th><code>{k}</code></th><td><code>{v}</code></td></tr> }).collect_view()}</tbody>
                    </table>
                })
            }}
            <h3>{t("Log")}</h3>
            {move || shown.get().map(|n| view! { <LogViewer tenant=tenant.slug.get_untracked() run=run_id task=id.get_value() attempt=Some(n)/> })}
            {move || attempts().is_empty().then(|| view! { <p class="muted">{t("This task has not run yet.")}</p> })}
        </section>
    }
    .into_any()
}
