//! Workers, by region and pool: each one's health, version, slots and resources in use, what it
//! runs, and (for platform admins) drain. Pools show their queue and why attempts wait.

use std::collections::BTreeMap;

use api_types::{PoolStatus, RunningAttempt, Worker};
use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{drain_worker, list_workers};
use crate::components::{Ask, ConfirmDialog, ErrorNotice, use_tenant};
use crate::i18n::{k, t, tr, use_prefs};

/// How a worker is, from what it last said: healthy, draining, silent (connected but not heard
/// from for a minute) or offline.
pub fn health(w: &Worker, now: chrono::DateTime<chrono::Utc>) -> &'static str {
    if !w.connected {
        k("offline")
    } else if w.last_seen_at < now - chrono::Duration::seconds(60) {
        k("silent")
    } else if w.draining {
        k("draining")
    } else {
        k("healthy")
    }
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[component]
pub fn WorkersPage() -> impl IntoView {
    let tenant = use_tenant();
    let refresh = RwSignal::new(0u32);
    let data = Resource::new(move || (refresh.get(), tenant.slug.get()), |(_, slug)| list_workers(slug));
    #[cfg(feature = "hydrate")]
    {
        let handle =
            set_interval_with_handle(move || refresh.update(|n| *n += 1), std::time::Duration::from_secs(5)).ok();
        on_cleanup(move || {
            if let Some(h) = handle {
                h.clear()
            }
        });
    }
    let ask = RwSignal::new(None::<Ask>);
    let drain_error = RwSignal::new(None);
    let lang = move || use_prefs().get().lang;
    let drain = Callback::new(move |id: String| {
        ask.set(Some(Ask {
            title: k("Drain this worker?"),
            body: format!("{id}: {}", tr(lang(), "it finishes what it runs and takes nothing new.")),
            yes: k("Drain"),
            on_yes: Callback::new(move |()| {
                let id = id.clone();
                leptos::task::spawn_local(async move {
                    match drain_worker(id).await {
                        Ok(_) => refresh.update(|n| *n += 1),
                        Err(e) => drain_error.set(Some(e)),
                    }
                });
            }),
        }));
    });
    view! {
        <Title text=t("Workers")/>
        <h1>{t("Workers")}</h1>
        {move || drain_error.get().map(|e| view! { <ErrorNotice error=e/> })}
        <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok((workers, pools, running)) => view! { <Pools pools/> <Regions workers running may_drain=tenant.platform_admin.get() drain/> }.into_any(),
                }
            })}
        </Transition>
        <ConfirmDialog ask/>
    }
    .into_any()
}

#[component]
fn Pools(pools: Vec<PoolStatus>) -> impl IntoView {
    view! {
        <h2>{t("Pools")}</h2>
        <table class="table" data-test="pools">
            <thead><tr><th>{t("Pool")}</th><th>{t("Live workers")}</th><th>{t("Their slots")}</th><th>{t("Slot limit")}</th><th>{t("Queued")}</th><th>{t("Cannot start")}</th></tr></thead>
            <tbody>
                {pools.into_iter().map(|p| view! {
                    <tr data-pool=p.name.clone() id=format!("pool-{}", p.name)>
                        <td><code>{p.name.clone()}</code></td>
                        <td>{p.workers}</td>
                        <td>{p.worker_slots}</td>
                        <td class="muted">{p.slots.map(|s| s.to_string()).unwrap_or_else(|| "—".into())}</td>
                        <td data-test="pool-queued">{p.queued}</td>
                        <td class:bad={p.unschedulable > 0}>
                            {p.unschedulable}
                            <ul class="small muted">{p.waiting.iter().map(|w| view! { <li>{w.attempts}" × "{w.reason.clone()}</li> }).collect_view()}</ul>
                        </td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
fn Regions(
    workers: Vec<Worker>,
    running: Vec<RunningAttempt>,
    may_drain: bool,
    drain: Callback<String>,
) -> impl IntoView {
    let tenant = use_tenant();
    let lang = move || use_prefs().get().lang;
    let now = crate::time::now();
    let mut on_worker: BTreeMap<String, Vec<RunningAttempt>> = BTreeMap::new();
    for a in running {
        on_worker.entry(a.worker_id.clone()).or_default().push(a);
    }
    let mut by_region: BTreeMap<String, BTreeMap<String, Vec<Worker>>> = BTreeMap::new();
    for w in workers {
        let region = if w.region.is_empty() { "—".to_owned() } else { w.region.clone() };
        by_region.entry(region).or_default().entry(w.pool.clone()).or_default().push(w);
    }
    if by_region.is_empty() {
        return view! {
            <div class="empty">
                <p>{t("No workers have connected.")}</p>
                <p class="muted">{t("Workers connect to this server on their own; each appears here with its pool, region and load.")}</p>
            </div>
        }
        .into_any();
    }
    by_region
        .into_iter()
        .map(|(region, pools)| {
            view! {
                <section class="region" data-region=region.clone()>
                    <h2>{t("Region")}" "{region.clone()}</h2>
                    {pools.into_iter().map(|(pool, list)| view! {
                        <h3>{t("Pool")}" "<code>{pool}</code></h3>
                        <table class="table" data-test="workers">
                            <thead><tr><th>{t("Worker")}</th><th>{t("Health")}</th><th>{t("Version")}</th><th>{t("Slots in use")}</th><th>{t("CPU free")}</th><th>{t("Memory free")}</th><th>{t("Isolation")}</th><th>{t("Last heard (UTC)")}</th><th></th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|w| {
                                    let h = health(&w, now);
                                    let (slots, free_slots) = (num(&w.capacity, "slots"), num(&w.free, "slots"));
                                    let id = w.id.clone();
                                    view! {
                                        <tr data-worker=w.id.clone() data-health=h>
                                            <td><strong>{w.id.clone()}</strong><div class="muted small">{w.hostname.clone()}</div></td>
                                            <td><span class=format!("badge health-{h}")>{move || tr(lang(), h)}</span></td>
                                            <td class="muted">{w.version.clone()}</td>
                                            <td>
                                                <meter min="0" max=slots.max(1) value=slots.saturating_sub(free_slots)></meter>
                                                " "{slots.saturating_sub(free_slots)}" / "{slots}<span class="muted small">" ("{w.running}" "{move || tr(lang(), "running")}")"</span>
                                            </td>
                                            <td class="muted">{format!("{:.1} / {:.1}", num(&w.free, "cpu_millis") as f64 / 1000.0, num(&w.capacity, "cpu_millis") as f64 / 1000.0)}</td>
                                            <td class="muted">{gib(num(&w.free, "memory_bytes"))}" / "{gib(num(&w.capacity, "memory_bytes"))}</td>
                                            <td class="muted small">{w.isolation.clone()}</td>
                                            <td class="muted small">{crate::time::stamp(w.last_seen_at)}</td>
                                            <td>{(may_drain && h == "healthy").then(|| view! {
                                                <button class="button tiny danger" data-test="drain" on:click=move |_| drain.run(id.clone())>{t("Drain")}</button>
                                            })}</td>
                                        </tr>
                                        {on_worker.remove(&w.id).map(|list| view! {
                                            <tr class="sub-row" data-running-on=w.id.clone()>
                                                <td></td>
                                                <td colspan="8">
                                                    <span class="muted small">{t("Running for this tenant:")}</span>
                                                    <ul class="inline-list" data-test="worker-attempts">
                                                        {list.into_iter().map(|a| view! {
                                                            <li>
                                                                <a href=tenant.href(&format!("/runs/{}", a.run_id))>{a.workflow.clone()}" / "<code>{a.task.clone()}</code></a>
                                                                <span class="muted small">" #"{a.attempt}" · "{t("since")}" "{crate::time::short(a.started_at, now)}</span>
                                                            </li>
                                                        }).collect_view()}
                                                    </ul>
                                                </td>
                                            </tr>
                                        })}
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }).collect_view()}
                </section>
            }
        })
        .collect_view()
        .into_any()
}
