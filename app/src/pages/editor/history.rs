//! Version history: every saved version with its message, a visual diff of any two (tasks added,
//! removed and changed, coloured on the graph of both), and rollback (a new version equal to an
//! old one).

use std::collections::BTreeSet;

use api_types::{Diff, Version};
use leptos::prelude::*;
use model::workflow::WorkflowSpec;
use model::{Action, Object};

use super::state::{Editor, Marks};
use super::{Canvas, Saved, fit_when_shown};
use crate::api::{diff_versions, get_version, get_workflow, list_versions, rollback};
use crate::components::{Ask, ErrorNotice, use_tenant};
use crate::graph::Graph;
use crate::i18n::{k, t, tr, use_prefs};

/// One graph of both versions: the newer one's tasks, plus the tasks the older one had and the
/// newer one dropped, with the edges of both.
pub fn union(old: &WorkflowSpec, new: &WorkflowSpec) -> WorkflowSpec {
    let mut out = new.clone();
    for t in &old.tasks {
        match out.tasks.iter_mut().find(|x| x.id == t.id) {
            Some(x) => {
                for d in &t.depends_on {
                    if !x.depends_on.contains(d) {
                        x.depends_on.push(d.clone());
                    }
                }
            }
            None => out.tasks.push(t.clone()),
        }
    }
    out
}

pub fn diff_marks(d: &Diff) -> Marks {
    let mut m = Marks::default();
    for id in &d.added {
        m.tasks.insert(id.clone(), "diff-added".into());
    }
    for id in &d.removed {
        m.tasks.insert(id.clone(), "diff-removed".into());
    }
    for c in &d.changed {
        m.tasks.insert(c.id.clone(), "diff-changed".into());
    }
    m
}

#[component]
pub fn Versions(ed: Editor, saved: RwSignal<Option<Saved>>, ask: RwSignal<Option<Ask>>) -> impl IntoView {
    let tenant = use_tenant();
    let lang = move || use_prefs().get().lang;
    let id = StoredValue::new(saved.with_untracked(|s| s.as_ref().map(|s| s.id.clone()).unwrap_or_default()));
    let current = saved.with_untracked(|s| s.as_ref().map_or(1, |s| s.version));
    let reload = RwSignal::new(0u32);
    let versions =
        Resource::new(move || (tenant.slug.get(), id.get_value(), reload.get()), |(t, id, _)| list_versions(t, id));
    let from = RwSignal::new((current - 1).max(1));
    let to = RwSignal::new(current);
    let rolled = RwSignal::new(None::<Result<String, crate::api::ConsoleError>>);
    let may_write = move || tenant.may(Object::Workflow, Action::Write);

    // The diff of the two chosen versions, and their union graph.
    let compared = Resource::new(
        move || (tenant.slug.get(), id.get_value(), from.get(), to.get()),
        |(slug, id, from, to)| async move {
            let d = diff_versions(slug.clone(), id.clone(), from, to).await?;
            let a = get_version(slug.clone(), id.clone(), from).await?;
            let b = get_version(slug, id, to).await?;
            let parse = |v: serde_json::Value| serde_json::from_value::<WorkflowSpec>(v).ok();
            Ok::<_, crate::api::ConsoleError>((d, parse(a.document), parse(b.document)))
        },
    );

    let roll = move |v: i32| {
        let slug = tenant.slug.get_untracked();
        let wid = id.get_value();
        let body = format!(
            "{} {v}. {}",
            tr(lang(), "A new version will be made, equal to version"),
            tr(lang(), "Unsaved edits in the editor are replaced.")
        );
        ask.set(Some(Ask {
            title: k("Roll back?"),
            body,
            yes: k("Roll back"),
            on_yes: Callback::new(move |()| {
                let (slug, wid) = (slug.clone(), wid.clone());
                leptos::task::spawn_local(async move {
                    let done = async {
                        let applied = rollback(slug.clone(), wid.clone(), v, String::new()).await?;
                        let detail = get_workflow(slug, wid).await?;
                        Ok::<_, crate::api::ConsoleError>((applied, detail))
                    };
                    match done.await {
                        Ok((applied, detail)) => {
                            let spec: WorkflowSpec =
                                serde_json::from_value(detail.document).unwrap_or_else(|_| ed.spec.get_untracked());
                            ed.load(Graph::new(spec.clone(), super::positions(detail.layout.as_ref())));
                            let w = applied.workflow;
                            rolled.set(Some(Ok(format!("{} {}", tr(lang(), "Rolled back: now version"), w.version))));
                            to.set(w.version);
                            from.set(v);
                            reload.update(|n| *n += 1);
                            saved.set(Some(Saved {
                                id: w.id.to_string(),
                                project: w.project,
                                version: w.version,
                                spec,
                                paused: w.schedule.map(|s| s.paused),
                            }));
                        }
                        Err(e) => rolled.set(Some(Err(e))),
                    }
                });
            }),
        }));
    };

    view! {
        <section class="versions" data-test="versions">
            {move || rolled.get().map(|r| match r {
                Ok(note) => view! { <div class="notice ok" role="status" data-test="rolled-back">{note}</div> }.into_any(),
                Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
            })}
            <div class="versions-grid">
                <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
                    {move || Suspend::new(async move {
                        match versions.await {
                            Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                            Ok(list) => view! { <VersionTable list from to may_write=may_write() roll/> }.into_any(),
                        }
                    })}
                </Transition>
                <div class="diff">
                    <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
                        {move || Suspend::new(async move {
                            match compared.await {
                                Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                                Ok((d, Some(a), Some(b))) => view! { <DiffView diff=d old=a new=b/> }.into_any(),
                                Ok(_) => view! { <p class="muted">{t("These versions cannot be shown.")}</p> }.into_any(),
                            }
                        })}
                    </Transition>
                </div>
            </div>
        </section>
    }
    .into_any()
}

#[component]
fn VersionTable(
    list: Vec<Version>,
    from: RwSignal<i32>,
    to: RwSignal<i32>,
    may_write: bool,
    roll: impl Fn(i32) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <table class="table compact" data-test="version-table">
            <thead><tr><th>{t("Version")}</th><th>{t("From")}</th><th>{t("To")}</th><th>{t("Message")}</th><th>{t("Saved (UTC)")}</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|v| {
                    let n = v.version;
                    view! {
                        <tr data-version=n>
                            <td>"v"{n}{v.current.then(|| view! { " " <span class="badge ok">{t("current")}</span> })}</td>
                            <td><input type="radio" name="diff-from" aria-label=format!("from v{n}") prop:checked=move || from.get() == n on:change=move |_| from.set(n)/></td>
                            <td><input type="radio" name="diff-to" aria-label=format!("to v{n}") prop:checked=move || to.get() == n on:change=move |_| to.set(n)/></td>
                            <td>{if v.message.is_empty() { "—".to_owned() } else { v.message.clone() }}</td>
                            <td class="muted small">{crate::time::stamp(v.created_at)}</td>
                            <td>{(may_write && !v.current).then(|| view! {
                                <button class="button tiny" data-test="rollback" on:click=move |_| roll(n)>{t("Roll back to this")}</button>
                            })}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
fn DiffView(diff: Diff, old: WorkflowSpec, new: WorkflowSpec) -> impl IntoView {
    let lang = move || use_prefs().get().lang;
    let mut g = Graph::new(union(&old, &new), Default::default());
    g.arrange();
    let marks = diff_marks(&diff);
    let ed = Editor::new(g, Signal::derive(|| false)).with_marks(Signal::derive(move || marks.clone()));
    let svg = NodeRef::<leptos::svg::Svg>::new();
    fit_when_shown(ed, svg);
    let same = diff.added.is_empty() && diff.removed.is_empty() && diff.changed.is_empty() && diff.settings.is_empty();
    let changed: BTreeSet<String> = diff.changed.iter().map(|c| format!("{}: {}", c.id, c.fields.join(", "))).collect();
    view! {
        <div class="diff-summary" data-test="diff">
            <h3>"v"{diff.from}" → v"{diff.to}</h3>
            {same.then(|| view! { <p class="muted">{t("No differences.")}</p> })}
            <ul class="legend">
                {(!diff.added.is_empty()).then(|| view! { <li class="diff-added" data-test="diff-added">{move || tr(lang(), "Added")}": "{diff.added.join(", ")}</li> })}
                {(!diff.removed.is_empty()).then(|| view! { <li class="diff-removed" data-test="diff-removed">{move || tr(lang(), "Removed")}": "{diff.removed.join(", ")}</li> })}
                {(!changed.is_empty()).then(|| view! { <li class="diff-changed" data-test="diff-changed">{move || tr(lang(), "Changed")}": "{changed.into_iter().collect::<Vec<_>>().join("; ")}</li> })}
                {(!diff.settings.is_empty()).then(|| view! { <li>{move || tr(lang(), "Workflow settings")}": "{diff.settings.join(", ")}</li> })}
            </ul>
        </div>
        <div class="canvas-wrap small">
            <Canvas ed svg label="Difference between the two versions"/>
        </div>
    }
    .into_any()
}
