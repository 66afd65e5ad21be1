//! The workflows of a tenant: search, filter by tag, owner and state; each with its last run, next
//! fire and schedule state. New workflows are drawn in the editor or imported as YAML; projects
//! (which workflows belong to) are managed below.

use api_types::{Project, Workflow};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use model::{Action, Object};

use crate::api::{ConsoleError, CreateProject, list_projects, list_workflows, save_workflow};
use crate::components::{ErrorNotice, Modal, StateBadge, use_tenant};
use crate::i18n::{k, t, tr, use_prefs};

/// Does a workflow match the search box (name, project, tag, owner or description)?
pub fn matches(w: &Workflow, query: &str, tag: &str, status: &str) -> bool {
    let q = query.trim().to_lowercase();
    let text = q.is_empty()
        || w.name.to_lowercase().contains(&q)
        || w.project.to_lowercase().contains(&q)
        || w.description.to_lowercase().contains(&q)
        || w.owner.as_deref().is_some_and(|o| o.to_lowercase().contains(&q))
        || w.tags.iter().any(|t| t.to_lowercase().contains(&q));
    let tagged = tag.is_empty() || w.tags.iter().any(|t| t == tag);
    let state = match status {
        "" => true,
        "scheduled" => w.schedule.as_ref().is_some_and(|s| !s.paused),
        "paused" => w.schedule.as_ref().is_some_and(|s| s.paused),
        "unscheduled" => w.schedule.is_none(),
        last => w.last_run.as_ref().is_some_and(|r| r.state.as_str() == last),
    };
    text && tagged && state
}

#[component]
pub fn WorkflowsPage() -> impl IntoView {
    let tenant = use_tenant();
    let create = ServerAction::<CreateProject>::new();
    let imported = RwSignal::new(0u32);
    let projects = Resource::new(move || (tenant.slug.get(), create.version().get()), |(t, _)| list_projects(t));
    let workflows = Resource::new(move || (tenant.slug.get(), imported.get()), |(t, _)| list_workflows(t));
    let may_write = move || tenant.may(Object::Workflow, Action::Write);
    let may_projects = move || tenant.may(Object::Project, Action::Write);
    let query = RwSignal::new(String::new());
    let tag = RwSignal::new(String::new());
    let status = RwSignal::new(String::new());
    let importing = RwSignal::new(false);
    view! {
        <Title text=t("Workflows")/>
        <div class="page-head">
            <h1>{t("Workflows")}</h1>
            <span class="spacer"></span>
            <Show when=may_write>
                <button class="button" data-test="import-yaml" on:click=move |_| importing.set(true)>{t("Import YAML")}</button>
                <a class="button primary" data-test="new-workflow" href=move || tenant.href("/workflows/new")>{t("New workflow")}</a>
            </Show>
        </div>
        <div class="filters" role="search">
            <input type="search" data-test="workflow-search" placeholder=t("Search by name, tag, owner…") aria-label=t("Search workflows")
                prop:value=move || query.get() on:input=move |e| query.set(event_target_value(&e))/>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let mut tags: Vec<String> = workflows.await.map(|l| l.into_iter().flat_map(|w| w.tags).collect()).unwrap_or_default();
                    tags.sort();
                    tags.dedup();
                    view! {
                        <select aria-label=t("Tag") on:change=move |e| tag.set(event_target_value(&e))>
                            <option value="">{t("Any tag")}</option>
                            {tags.into_iter().map(|tg| view! { <option value=tg.clone()>{tg.clone()}</option> }).collect_view()}
                        </select>
                    }
                })}
            </Transition>
            <select aria-label=t("State") data-test="workflow-status" on:change=move |e| status.set(event_target_value(&e))>
                <option value="">{t("Any state")}</option>
                <option value="scheduled">{t("scheduled")}</option>
                <option value="paused">{t("paused")}</option>
                <option value="unscheduled">{t("not scheduled")}</option>
                <option value="failed">{t("last run failed")}</option>
                <option value="succeeded">{t("last run succeeded")}</option>
                <option value="running">{t("running now")}</option>
            </select>
        </div>
        <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
            {move || Suspend::new(async move {
                match workflows.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <div class="empty"><p>{t("No workflows yet.")}</p><p class="muted">{t("Draw one in the editor, or import a YAML document.")}</p></div>
                    }.into_any(),
                    Ok(list) => view! { <WorkflowTable list query tag status/> }.into_any(),
                }
            })}
        </Transition>
        <Show when=move || importing.get()>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let projects = projects.await.unwrap_or_default();
                    view! { <ImportDialog projects close=Callback::new(move |_| { importing.set(false); imported.update(|n| *n += 1); })/> }
                })}
            </Transition>
        </Show>
        <h2>{t("Projects")}</h2>
        <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
            {move || Suspend::new(async move {
                match projects.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <div class="empty"><p>{t("No projects yet.")}</p></div>
                    }.into_any(),
                    Ok(list) => view! {
                        <table class="table" data-test="projects">
                            <thead><tr><th>{t("Key")}</th><th>{t("Name")}</th><th>{t("Description")}</th><th>{t("Created")}</th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|p| view! {
                                    <tr>
                                        <td><code>{p.slug}</code></td>
                                        <td>{p.name}</td>
                                        <td class="muted">{p.description}</td>
                                        <td class="muted">{p.created_at.format("%Y-%m-%d").to_string()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Transition>
        <Show when=may_projects>
            <section class="card">
                <h3>{t("New project")}</h3>
                <ActionForm action=create attr:class="inline-form">
                    <input type="hidden" name="tenant" prop:value=move || tenant.slug.get()/>
                    <label>{t("Key")}<input name="slug" required=true pattern="[a-z][a-z0-9-]*" placeholder="data-platform"/></label>
                    <label>{t("Name")}<input name="name" required=true placeholder="Data Platform"/></label>
                    <label class="grow">{t("Description")}<input name="description" placeholder=t("optional")/></label>
                    <button class="button primary" type="submit">{t("Create")}</button>
                </ActionForm>
                {move || create.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorNotice error=e/> })}
            </section>
        </Show>
    }
    .into_any()
}

#[component]
fn WorkflowTable(
    list: Vec<Workflow>,
    query: RwSignal<String>,
    tag: RwSignal<String>,
    status: RwSignal<String>,
) -> impl IntoView {
    let tenant = use_tenant();
    let lang = move || use_prefs().get().lang;
    let now = crate::time::now();
    let list = StoredValue::new(list);
    let shown = move || {
        list.with_value(|l| {
            l.iter().filter(|w| matches(w, &query.get(), &tag.get(), &status.get())).cloned().collect::<Vec<_>>()
        })
    };
    view! {
        <table class="table" data-test="workflows">
            <thead><tr>
                <th>{t("Workflow")}</th><th>{t("Project")}</th><th>{t("Tags")}</th><th>{t("Owner")}</th>
                <th>{t("Last run")}</th><th>{t("Next fire (UTC)")}</th><th>{t("Schedule")}</th><th>{t("Tasks")}</th>
            </tr></thead>
            <tbody>
                {move || shown().into_iter().map(|w| {
                    let href = tenant.href(&format!("/workflows/{}", w.id));
                    let last = w.last_run.clone();
                    view! {
                        <tr data-workflow=w.name.clone()>
                            <td><a href=href><strong>{w.name.clone()}</strong></a><div class="muted small">{w.description.clone()}</div></td>
                            <td><code>{w.project.clone()}</code></td>
                            <td>{w.tags.iter().map(|tg| view! { <span class="tag">{tg.clone()}</span> }).collect_view()}</td>
                            <td class="muted">{w.owner.clone().unwrap_or_default()}</td>
                            <td>{last.map(|r| view! {
                                <a href=tenant.href(&format!("/runs/{}", r.id))><StateBadge state=r.state.as_str().to_owned()/></a>
                                <span class="muted small">" "{crate::time::short(r.queued_at, now)}</span>
                            })}</td>
                            <td class="muted">{w.schedule.as_ref().and_then(|s| s.next_fire_at).map(|n| crate::time::short(n, now))}</td>
                            <td>{w.schedule.as_ref().map(|s| {
                                let (class, label) = if s.paused { ("badge warn", k("paused")) } else { ("badge ok", k("active")) };
                                view! { <span class=class title=s.cron.clone()>{move || tr(lang(), label)}</span> }
                            })}</td>
                            <td>{w.task_count}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// Paste (or pick a file of) a YAML or JSON document; it is saved as a new workflow (or a new
/// version of the one with that name) in the chosen project.
#[component]
fn ImportDialog(projects: Vec<Project>, close: Callback<()>) -> impl IntoView {
    let tenant = use_tenant();
    let navigate = use_navigate();
    let project = RwSignal::new(projects.first().map(|p| p.slug.clone()).unwrap_or_default());
    let text = RwSignal::new(String::new());
    let error = RwSignal::new(None);
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let slug = tenant.slug.get_untracked();
        let (p, doc) = (project.get_untracked(), text.get_untracked());
        let navigate = navigate.clone();
        busy.set(true);
        leptos::task::spawn_local(async move {
            match save_workflow(slug.clone(), p, doc, "imported".into(), None).await {
                Ok(a) => {
                    close.run(());
                    navigate(&format!("/t/{slug}/workflows/{}", a.workflow.id), Default::default());
                }
                Err(e) => {
                    busy.set(false);
                    error.set(Some(e));
                }
            }
        });
    };
    let no_projects = projects.is_empty();
    view! {
        <Modal close class="wide">
            <form data-test="import-dialog" on:submit=submit>
                <h3>{t("Import a workflow")}</h3>
                {no_projects.then(|| view! { <p class="notice warn">{t("Create a project first: a workflow belongs to one.")}</p> })}
                <label>{t("Project")}
                    <select on:change=move |e| project.set(event_target_value(&e))>
                        {projects.iter().map(|p| view! { <option value=p.slug.clone()>{p.name.clone()}</option> }).collect_view()}
                    </select>
                </label>
                <label>{t("From a file")}
                    <input type="file" accept=".yaml,.yml,.json,application/json,application/yaml,text/yaml" data-test="import-file"
                        on:change=move |ev| read_file(&ev, text, error)/>
                </label>
                <label>{t("YAML or JSON document")}
                    <textarea class="code" rows="14" data-test="import-text" spellcheck="false" required=true
                        prop:value=move || text.get() on:input=move |e| text.set(event_target_value(&e))></textarea>
                </label>
                {move || error.get().map(|e| view! { <ErrorNotice error=e/> })}
                <div class="modal-actions">
                    <button type="button" class="button" on:click=move |_| close.run(())>{t("Cancel")}</button>
                    <button type="submit" class="button primary" data-test="import-submit" disabled=move || busy.get() || no_projects>{t("Import")}</button>
                </div>
            </form>
        </Modal>
    }
    .into_any()
}

/// Puts the text of the file chosen in `ev`'s input into `text` (or says why it could not).
fn read_file(ev: &leptos::ev::Event, text: RwSignal<String>, error: RwSignal<Option<ConsoleError>>) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;
        let Some(file) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
            .and_then(|input| input.files())
            .and_then(|files| files.get(0))
        else {
            return;
        };
        let read = wasm_bindgen_futures::JsFuture::from(file.text());
        leptos::task::spawn_local(async move {
            match read.await.ok().and_then(|v| v.as_string()) {
                Some(s) => {
                    error.set(None);
                    text.set(s);
                }
                None => error.set(Some(ConsoleError {
                    code: "invalid_input".into(),
                    message: tr(use_prefs().get_untracked().lang, "The file could not be read as text").to_owned(),
                })),
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (ev, text, error);
}
