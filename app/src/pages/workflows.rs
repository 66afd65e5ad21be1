use leptos::prelude::*;
use leptos_meta::Title;
use model::{Action, Object};

use crate::api::{CreateProject, list_projects};
use crate::components::{ErrorNotice, use_tenant};

/// Workflows are grouped in projects; until a tenant has workflows, this page manages projects.
#[component]
pub fn WorkflowsPage() -> impl IntoView {
    let tenant = use_tenant();
    let create = ServerAction::<CreateProject>::new();
    let projects = Resource::new(move || (tenant.slug.get(), create.version().get()), |(t, _)| list_projects(t));
    let may_write = move || tenant.role.get().is_some_and(|r| r.allows(Object::Project, Action::Write));
    view! {
        <Title text="Workflows"/>
        <h1>"Workflows"</h1>
        <h2>"Projects"</h2>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match projects.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <div class="empty"><p>"No projects yet."</p></div>
                    }.into_any(),
                    Ok(list) => view! {
                        <table class="table" data-test="projects">
                            <thead><tr><th>"Key"</th><th>"Name"</th><th>"Description"</th><th>"Created"</th></tr></thead>
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
        <Show when=may_write>
            <section class="card">
                <h3>"New project"</h3>
                <ActionForm action=create attr:class="inline-form">
                    <input type="hidden" name="tenant" prop:value=move || tenant.slug.get()/>
                    <label>"Key"<input name="slug" required=true pattern="[a-z][a-z0-9-]*" placeholder="data-platform"/></label>
                    <label>"Name"<input name="name" required=true placeholder="Data Platform"/></label>
                    <label class="grow">"Description"<input name="description" placeholder="optional"/></label>
                    <button class="button primary" type="submit">"Create"</button>
                </ActionForm>
                {move || create.value().get().and_then(|r| r.err()).map(|e| view! { <ErrorNotice error=e/> })}
            </section>
        </Show>
    }
}
