//! The workflow editor: a palette of task kinds, the graph canvas, the selected task's panel or
//! the task list, the YAML view beside the graph, the schedule, the workflow's settings, and its
//! version history with a visual diff. Save makes a new version (with a message) when the
//! document changed, and keeps the layout.

mod canvas;
mod dialogs;
mod history;
mod panel;
mod schedule;
mod schema_form;
mod settings;
pub(crate) mod state;
pub(crate) mod validation;
mod yaml;

use api_types::{Project, WorkflowDetail};
use leptos::ev;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};
use model::workflow::WorkflowSpec;
use model::{Action, Object};
use serde_json::Value;

pub(crate) use canvas::{Canvas, fit_when_shown, rect_of};
use state::Editor;
use validation::{Checked, check};

use crate::api::{get_workflow, list_projects, save_workflow};
use crate::components::{ConfirmDialog, ErrorNotice, use_tenant};
use crate::graph::{Graph, Positions, Pt, from_yaml, to_yaml};
use crate::i18n::{k, t, tr, use_prefs};

/// Positions from a saved layout (`{id: {x, y}}`); anything else is ignored.
pub(crate) fn positions(layout: Option<&Value>) -> Positions {
    layout
        .and_then(Value::as_object)
        .map(|m| {
            m.iter().filter_map(|(id, p)| Some((id.clone(), Pt { x: p["x"].as_f64()?, y: p["y"].as_f64()? }))).collect()
        })
        .unwrap_or_default()
}

fn layout_json(pos: &Positions) -> Value {
    Value::Object(
        pos.iter().map(|(id, p)| (id.clone(), serde_json::json!({ "x": p.x.round(), "y": p.y.round() }))).collect(),
    )
}

/// The document a new workflow starts from.
fn starter() -> WorkflowSpec {
    from_yaml("name: new-workflow\ntasks: []\n").expect("the starter parses")
}

/// `/t/{tenant}/workflows/{id}`
#[component]
pub fn WorkflowPage() -> impl IntoView {
    let tenant = use_tenant();
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let detail = Resource::new(move || (tenant.slug.get(), id.get()), |(t, id)| get_workflow(t, id));
    view! {
        <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok(d) => view! { <EditorShell detail=Some(d) projects=Vec::new()/> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

/// `/t/{tenant}/workflows/new`
#[component]
pub fn NewWorkflowPage() -> impl IntoView {
    let tenant = use_tenant();
    let projects = Resource::new(move || tenant.slug.get(), list_projects);
    view! {
        <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
            {move || Suspend::new(async move {
                match projects.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok(p) => view! { <EditorShell detail=None projects=p/> }.into_any(),
                }
            })}
        </Transition>
    }
    .into_any()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tab {
    Graph,
    Schedule,
    Settings,
    History,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Task,
    List,
}

/// What the editor knows about the saved workflow.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Saved {
    pub id: String,
    pub project: String,
    pub version: i32,
    pub spec: WorkflowSpec,
    pub paused: Option<bool>,
}

#[component]
fn EditorShell(detail: Option<WorkflowDetail>, projects: Vec<Project>) -> impl IntoView {
    let tenant = use_tenant();
    let query = use_query_map();
    let lang = move || use_prefs().get().lang;
    let navigate = use_navigate();
    let may_write = Signal::derive(move || tenant.may(Object::Workflow, Action::Write));
    let may_run = Signal::derive(move || tenant.may(Object::Run, Action::Execute));

    let (spec, pos) = match &detail {
        Some(d) => (
            serde_json::from_value::<WorkflowSpec>(d.document.clone()).unwrap_or_else(|_| starter()),
            positions(d.layout.as_ref()),
        ),
        None => (starter(), Positions::new()),
    };
    let saved = RwSignal::new(detail.as_ref().map(|d| Saved {
        id: d.workflow.id.to_string(),
        project: d.workflow.project.clone(),
        version: d.workflow.version,
        spec: spec.clone(),
        paused: d.workflow.schedule.as_ref().map(|s| s.paused),
    }));
    let checked = RwSignal::new(check(&spec, use_prefs().get_untracked().lang));
    let ed_base = Editor::new(Graph::new(spec, pos), may_write);
    let checked_memo = Memo::new(move |_| checked.get());
    let ed = ed_base.with_marks(Signal::derive(move || checked.with(Checked::marks)));
    // Validation runs on each document change (not on moves: positions are a separate signal).
    Effect::new(move |_| {
        let l = lang();
        let c = ed.spec.with(|s| check(s, l));
        checked.set(c);
    });

    let tab = RwSignal::new(Tab::Graph);
    let side = RwSignal::new(Side::Task);
    let show_yaml = RwSignal::new(query.read_untracked().get("view").as_deref() == Some("yaml"));
    let svg = NodeRef::<leptos::svg::Svg>::new();
    let ask = RwSignal::new(None);
    let dialog = RwSignal::new(None::<dialogs::Dialog>);
    let find = RwSignal::new(String::new());

    fit_when_shown(ed, svg);
    guard_unsaved(ed.dirty);

    // Saving.
    let message = RwSignal::new(String::new());
    let project = RwSignal::new(projects.first().map(|p| p.slug.clone()).unwrap_or_default());
    let save_result = RwSignal::new(None::<Result<String, crate::api::ConsoleError>>);
    let saving = RwSignal::new(false);
    let save = {
        let navigate = navigate.clone();
        move || {
            if saving.get_untracked() {
                return;
            }
            let proj = saved
                .with_untracked(|s| s.as_ref().map(|s| s.project.clone()))
                .unwrap_or_else(|| project.get_untracked());
            let document = to_yaml(&ed.spec.get_untracked());
            let layout = Some(layout_json(&ed.pos.get_untracked()));
            let msg = message.get_untracked();
            let slug = tenant.slug.get_untracked();
            let was_new = saved.with_untracked(Option::is_none);
            let navigate = navigate.clone();
            saving.set(true);
            leptos::task::spawn_local(async move {
                let r = save_workflow(slug.clone(), proj, document, msg, layout).await;
                saving.set(false);
                match r {
                    Ok(applied) => {
                        let w = applied.workflow;
                        message.set(String::new());
                        ed.dirty.set(false);
                        let note = if applied.changed {
                            format!("{} {}", tr(lang(), "Saved as version"), w.version)
                        } else {
                            tr(lang(), "Saved (the document did not change: no new version)").to_owned()
                        };
                        let note = applied.warnings.iter().fold(note, |n, w| format!("{n}\n{w}"));
                        save_result.set(Some(Ok(note)));
                        let spec = ed.spec.get_untracked();
                        saved.set(Some(Saved {
                            id: w.id.to_string(),
                            project: w.project.clone(),
                            version: w.version,
                            spec,
                            paused: w.schedule.as_ref().map(|s| s.paused),
                        }));
                        if was_new {
                            navigate(&format!("/t/{slug}/workflows/{}", w.id), Default::default());
                        }
                    }
                    Err(e) => save_result.set(Some(Err(e))),
                }
            });
        }
    };
    let save_now = save.clone();
    let can_save = move || {
        may_write.get() && checked.with(Checked::ok) && !saving.get() && (ed.dirty.get() || saved.with(Option::is_none))
    };

    // Drag from the palette: a ghost follows the pointer; released over the canvas, it adds a task there.
    let palette_drag = RwSignal::new(None::<(String, f64, f64)>);
    let drop_kind = move |kind: &str, cx: f64, cy: f64| {
        let (left, top, w, h) = rect_of(&svg);
        if cx >= left && cx <= left + w && cy >= top && cy <= top + h {
            let v = ed.view.get_untracked();
            let at = Pt {
                x: (cx - left - v.x) / v.k - crate::graph::NODE_W / 2.0,
                y: (cy - top - v.y) / v.k - crate::graph::NODE_H / 2.0,
            };
            let id = ed.edit(|g| g.add_task(kind, at));
            ed.select_only(&id);
            side.set(Side::Task);
        }
    };
    let move_handle = window_event_listener(ev::pointermove, move |e: ev::PointerEvent| {
        if palette_drag.with_untracked(Option::is_some) {
            palette_drag.update(|d| {
                if let Some(d) = d {
                    d.1 = f64::from(e.client_x());
                    d.2 = f64::from(e.client_y());
                }
            });
        }
    });
    let up_handle = window_event_listener(ev::pointerup, move |e: ev::PointerEvent| {
        if let Some((kind, ..)) = palette_drag.get_untracked() {
            palette_drag.set(None);
            drop_kind(&kind, f64::from(e.client_x()), f64::from(e.client_y()));
        }
    });
    on_cleanup(move || {
        move_handle.remove();
        up_handle.remove();
    });
    // Keyboard: Ctrl+S saves from anywhere in the editor.
    let key_handle = window_event_listener(ev::keydown, move |e: ev::KeyboardEvent| {
        if (e.ctrl_key() || e.meta_key()) && e.key() == "s" {
            e.prevent_default();
            if can_save() {
                save_now();
            }
        }
    });
    on_cleanup(move || key_handle.remove());

    let open = Callback::new(move |id: String| {
        ed.select_only(&id);
        side.set(Side::Task);
        if let Some(el) = document().get_element_by_id("task-id") {
            use leptos::wasm_bindgen::JsCast;
            if let Ok(el) = el.dyn_into::<web_sys::HtmlElement>() {
                let _ = el.focus();
            }
        }
    });
    let notice = move || {
        ed.notice.get().map(|n| {
            let text = match n.split_once(':') {
                Some(("cycle", path)) => format!("{} {path}", tr(lang(), "Not connected: that would make a cycle:")),
                Some(("unknown", id)) => format!("{} {id}", tr(lang(), "There is no task")),
                _ if n == "exists" => tr(lang(), "These tasks are already connected.").to_owned(),
                _ => tr(lang(), "A task cannot depend on itself.").to_owned(),
            };
            view! {
                <div class="notice warn toast" role="status" data-test="edit-notice">
                    {text}" "<button class="button tiny subtle" on:click=move |_| ed.notice.set(None)>"×"</button>
                </div>
            }
        })
    };
    let title = move || ed.spec.with(|s| s.name.clone());
    let find_go = move || {
        let q = find.get_untracked().to_lowercase();
        if q.is_empty() {
            return;
        }
        let hit =
            ed.spec.with_untracked(|s| s.tasks.iter().find(|t| t.id.to_lowercase().contains(&q)).map(|t| t.id.clone()));
        if let Some(id) = hit {
            let (_, _, w, h) = rect_of(&svg);
            ed.focus(&id, w, h);
            side.set(Side::Task);
        }
    };

    view! {
        <Title text=title/>
        <div class="editor" data-test="editor">
            <header class="editor-head">
                <div class="editor-title">
                    <a href=move || tenant.href("/workflows") class="muted small">{t("Workflows")}" /"</a>
                    <h1 data-test="workflow-name">{title}</h1>
                    {move || saved.get().map(|s| view! { <span class="badge" data-test="version">"v"{s.version}</span> })}
                    {move || ed.dirty.get().then(|| view! { <span class="badge warn" data-test="unsaved">{t("unsaved")}</span> })}
                </div>
                <div class="toolbar" role="toolbar" aria-label=t("Editor")>
                    <button class="button" data-test="undo" disabled=move || !ed.can_undo.get() on:click=move |_| ed.undo() title="Ctrl+Z">{t("Undo")}</button>
                    <button class="button" data-test="redo" disabled=move || !ed.can_redo.get() on:click=move |_| ed.redo() title="Ctrl+Shift+Z">{t("Redo")}</button>
                    <button class="button" data-test="arrange" disabled=move || !may_write.get() on:click=move |_| { let (_, _, w, h) = rect_of(&svg); ed.arrange(w, h); }>{t("Arrange")}</button>
                    <button class="button" data-test="fit" on:click=move |_| { let (_, _, w, h) = rect_of(&svg); ed.fit(w, h); } title="0">{t("Fit")}</button>
                    <button class="button" aria-pressed=move || show_yaml.get().to_string() data-test="toggle-yaml" on:click=move |_| show_yaml.update(|v| *v = !*v)>"YAML"</button>
                    <form class="find" on:submit=move |e| { e.prevent_default(); find_go(); }>
                        <input type="search" data-test="find" placeholder=t("Find a task") aria-label=t("Find a task") prop:value=move || find.get() on:input=move |e| find.set(event_target_value(&e))/>
                    </form>
                    <span class="spacer"></span>
                    <Show when=move || saved.with(Option::is_some) && may_run.get()>
                        <button class="button" data-test="open-trigger" on:click=move |_| dialog.set(Some(dialogs::Dialog::Trigger))>{t("Trigger")}</button>
                        <button class="button" data-test="open-backfill" on:click=move |_| dialog.set(Some(dialogs::Dialog::Backfill))>{t("Backfill")}</button>
                    </Show>
                </div>
            </header>
            <nav class="tabs" aria-label=t("Editor")>
                {[(Tab::Graph, k("Graph")), (Tab::Schedule, k("Schedule")), (Tab::Settings, k("Settings")), (Tab::History, k("Versions"))].into_iter().map(|(tb, label)| view! {
                    <button class="tab" role="tab" data-test=format!("tab-{}", label.to_lowercase()) aria-selected=move || (tab.get() == tb).to_string()
                        on:click=move |_| tab.set(tb)>{move || tr(lang(), label)}</button>
                }).collect_view()}
            </nav>
            {notice}
            <Show when=move || !checked.with(Checked::ok)>
                <div class="notice error" role="alert" data-test="problems">
                    <strong>{t("This workflow cannot be saved yet:")}</strong>
                    <ul>{move || checked.with(Checked::lines).into_iter().map(|m| view! { <li>{m}</li> }).collect_view()}</ul>
                </div>
            </Show>
            <div class="editor-body" class:hidden=move || tab.get() != Tab::Graph class:with-yaml=move || show_yaml.get()>
                <Palette drag=palette_drag disabled=Signal::derive(move || !may_write.get()) on_add=Callback::new(move |kind: String| {
                    let (_, _, w, h) = rect_of(&svg);
                    let v = ed.view.get_untracked();
                    let at = Pt { x: (w / 2.0 - v.x) / v.k, y: (h / 2.0 - v.y) / v.k };
                    let id = ed.edit(|g| g.add_task(&kind, at));
                    ed.select_only(&id);
                })/>
                <div class="canvas-wrap">
                    <Canvas ed svg on_open=open label=tr(lang(), "Workflow graph")/>
                </div>
                <Show when=move || show_yaml.get()>
                    <yaml::YamlView ed/>
                </Show>
                <aside class="side" aria-label=t("Details")>
                    <div class="side-tabs">
                        <button class="tab" aria-selected=move || (side.get() == Side::Task).to_string() on:click=move |_| side.set(Side::Task)>{t("Task")}</button>
                        <button class="tab" data-test="side-list" aria-selected=move || (side.get() == Side::List).to_string() on:click=move |_| side.set(Side::List)>
                            {t("All tasks")}" ("{move || ed.spec.with(|s| s.tasks.len())}")"
                        </button>
                    </div>
                    {move || match side.get() {
                        Side::List => view! { <TaskList ed svg side=Callback::new(move |_| side.set(Side::Task))/> }.into_any(),
                        Side::Task => {
                            let sel = ed.selection.get();
                            match (sel.len(), sel.first().cloned()) {
                                (1, Some(id)) => view! { <panel::TaskPanel ed id checked=checked_memo/> }.into_any(),
                                (0, _) => view! { <p class="muted small">{t("Select a task to edit it, or drag a kind from the palette onto the canvas. Connect tasks by dragging from the dot on a task's right edge to another task.")}</p> }.into_any(),
                                (n, _) => view! { <p class="muted small" data-test="multi-selection">{n}" "{t("tasks selected: move them together, copy (Ctrl+C), paste (Ctrl+V) or delete them.")}</p> }.into_any(),
                            }
                        }
                    }}
                </aside>
            </div>
            <Show when=move || tab.get() == Tab::Schedule>
                <schedule::ScheduleEditor ed saved/>
            </Show>
            <Show when=move || tab.get() == Tab::Settings>
                <settings::WorkflowSettings ed/>
            </Show>
            <Show when=move || tab.get() == Tab::History>
                <Show when=move || saved.with(Option::is_some)
                    fallback=|| view! { <p class="muted">{t("Versions appear here once the workflow is saved.")}</p> }>
                    <history::Versions ed saved ask/>
                </Show>
            </Show>
            <footer class="savebar">
                {(!projects.is_empty()).then(|| view! {
                    <label class="inline">{t("Project")}
                        <select data-test="save-project" on:change=move |e| project.set(event_target_value(&e))>
                            {projects.iter().map(|p| view! { <option value=p.slug.clone()>{p.name.clone()}</option> }).collect_view()}
                        </select>
                    </label>
                })}
                {move || (saved.with(Option::is_none) && projects.is_empty()).then(|| view! {
                    <span class="notice warn">{t("Create a project first (Workflows page): a workflow belongs to one.")}</span>
                })}
                <input class="grow" data-test="save-message" placeholder=t("What changed (shown in the version history)") aria-label=t("Version message")
                    prop:value=move || message.get() on:input=move |e| message.set(event_target_value(&e))/>
                <button class="button primary" data-test="save" disabled=move || !can_save() on:click=move |_| save()>
                    {move || if saving.get() { t("Saving…")() } else { t("Save")() }}
                </button>
                {move || save_result.get().map(|r| match r {
                    Ok(note) => view! { <span class="save-note ok" role="status" data-test="save-result">{note}</span> }.into_any(),
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                })}
            </footer>
            {move || dialog.get().map(|d| view! { <dialogs::DialogView dialog=d saved close=Callback::new(move |_| dialog.set(None))/> })}
            <ConfirmDialog ask/>
            {move || palette_drag.get().map(|(kind, x, y)| view! {
                <div class="palette-ghost" style=format!("left:{x}px;top:{y}px")>{kind}</div>
            })}
        </div>
    }
    .into_any()
}

/// The task kinds. Drag one onto the canvas (or press Enter on it to add it in the middle).
#[component]
fn Palette(
    drag: RwSignal<Option<(String, f64, f64)>>,
    disabled: Signal<bool>,
    on_add: Callback<String>,
) -> impl IntoView {
    let lang = move || use_prefs().get().lang;
    view! {
        <div class="palette" role="list" aria-label=t("Task kinds") data-test="palette">
            <h3>{t("Task kinds")}</h3>
            {model::workflow::TaskKind::NAMES.into_iter().map(|kind| view! {
                <button class="palette-item" role="listitem" data-kind=kind disabled=move || disabled.get()
                    title=move || tr(lang(), kind_hint(kind))
                    on:pointerdown=move |e: ev::PointerEvent| {
                        if e.button() == 0 && !disabled.get_untracked() {
                            e.prevent_default();
                            drag.set(Some((kind.to_owned(), f64::from(e.client_x()), f64::from(e.client_y()))));
                        }
                    }
                    on:keydown=move |e: ev::KeyboardEvent| if e.key() == "Enter" || e.key() == " " { e.prevent_default(); on_add.run(kind.to_owned()) }>
                    <span class=format!("kind-dot kind-{kind}")></span>{kind}
                </button>
            }).collect_view()}
        </div>
    }
    .into_any()
}

fn kind_hint(kind: &str) -> &'static str {
    match kind {
        "noop" => k("Does nothing: a join point or a placeholder"),
        "sleep" => k("Waits some seconds"),
        "shell" => k("Runs a shell script on a worker"),
        "python" => k("Runs Python code on a worker"),
        "http" => k("Calls a URL and checks the answer"),
        "sql" => k("Runs a query against one of the tenant's connections"),
        "plugin" => k("Runs a custom kind from the worker's plugin directory"),
        "switch" => k("Picks which downstream branch runs"),
        "sub_workflow" => k("Runs another workflow and waits for it"),
        "dependency" => k("Waits for another workflow's run of the same logical time"),
        _ => "",
    }
}

/// Every task in a list beside the graph: filter, then pick one to show it on the canvas.
#[component]
fn TaskList(ed: Editor, svg: NodeRef<leptos::svg::Svg>, side: Callback<()>) -> impl IntoView {
    let filter = RwSignal::new(String::new());
    let rows = Memo::new(move |_| {
        let q = filter.get().to_lowercase();
        ed.spec.with(|s| {
            s.tasks
                .iter()
                .filter(|t| q.is_empty() || t.id.to_lowercase().contains(&q) || t.kind.contains(&q))
                .map(|t| (t.id.clone(), t.kind.clone(), t.depends_on.len()))
                .collect::<Vec<_>>()
        })
    });
    view! {
        <div class="task-list" data-test="task-list">
            <input type="search" placeholder=t("Filter tasks") aria-label=t("Filter tasks") prop:value=move || filter.get()
                on:input=move |e| filter.set(event_target_value(&e))/>
            <ul>
                <For each=move || rows.get() key=|r| r.clone() let:row>
                    {
                        let id = row.0.clone();
                        view! {
                            <li>
                                <button class="linklike" class:selected={ let id = id.clone(); move || ed.selection.with(|s| s.contains(&id)) }
                                    on:click=move |_| { let (_, _, w, h) = rect_of(&svg); ed.focus(&id, w, h); side.run(()); }>
                                    <code>{row.0.clone()}</code>
                                </button>
                                <span class="muted small">" "{row.1.clone()}{(row.2 > 0).then(|| format!(" · ← {}", row.2))}</span>
                            </li>
                        }
                    }
                </For>
            </ul>
        </div>
    }
    .into_any()
}

/// While the document has unsaved changes, leaving asks first: closing or reloading the tab (the
/// browser's own question), and following a link of the console (ours; the router would
/// otherwise swap the page without a word). The editor's own navigation after a save is not a
/// link and goes through.
fn guard_unsaved(dirty: RwSignal<bool>) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;
        use leptos::wasm_bindgen::closure::Closure;

        let unload = window_event_listener(ev::beforeunload, move |e: web_sys::BeforeUnloadEvent| {
            if dirty.get_untracked() {
                e.prevent_default();
                e.set_return_value("unsaved");
            }
        });
        // In the capture phase, so it runs before the router's own click handler, which leaves a
        // click alone once its default is prevented.
        let click = Closure::<dyn Fn(web_sys::MouseEvent)>::new(move |e: web_sys::MouseEvent| {
            if !dirty.get_untracked()
                || e.default_prevented()
                || e.button() != 0
                || e.meta_key()
                || e.ctrl_key()
                || e.shift_key()
                || e.alt_key()
            {
                return;
            }
            let link = e
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .and_then(|el| el.closest("a[href]").ok().flatten());
            let Some(link) = link else { return };
            if link.has_attribute("download") || link.get_attribute("target").is_some_and(|t| t != "_self") {
                return;
            }
            let question =
                tr(use_prefs().get_untracked().lang, "This workflow has unsaved changes. Leave and lose them?");
            if !window().confirm_with_message(question).unwrap_or(true) {
                e.prevent_default();
                e.stop_propagation();
            }
        });
        let doc = document();
        let _ = doc.add_event_listener_with_callback_and_bool("click", click.as_ref().unchecked_ref(), true);
        let keep = send_wrapper::SendWrapper::new((doc, click));
        on_cleanup(move || {
            unload.remove();
            let _ = keep.0.remove_event_listener_with_callback_and_bool("click", keep.1.as_ref().unchecked_ref(), true);
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = dirty;
}
