//! The tenant's day at a glance: runs today by state, the success rate, how late scheduled runs
//! start, the queue by pool, and the workflows that fail. Each number links to the list it counts.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::get_dashboard;
use crate::components::{ErrorNotice, use_tenant};
use crate::i18n::{t, tr, use_prefs};

/// How often the dashboard refreshes its numbers.
const REFRESH_MS: u64 = 5_000;

#[component]
pub fn DashboardPage() -> impl IntoView {
    let tenant = use_tenant();
    let lang = move || use_prefs().get().lang;
    let data = Resource::new(move || tenant.slug.get(), get_dashboard);
    // Live: refetch while the page is open (browser only; the server renders the first state).
    #[cfg(feature = "hydrate")]
    {
        let handle =
            set_interval_with_handle(move || data.refetch(), std::time::Duration::from_millis(REFRESH_MS)).ok();
        on_cleanup(move || {
            if let Some(h) = handle {
                h.clear();
            }
        });
    }
    let _ = REFRESH_MS;
    view! {
        <Title text=t("Dashboard")/>
        <h1>{t("Dashboard")}</h1>
        <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok(d) => {
                        let since = d.since.format("%Y-%m-%d").to_string();
                        let runs_href = {
                            let (slug, since) = (d.tenant.slug.clone(), since.clone());
                            move |state: &str| {
                                let s = if state.is_empty() { String::new() } else { format!("&state={state}") };
                                format!("/t/{slug}/runs?since={since}{s}")
                            }
                        };
                        let total: i64 = d.runs.values().sum();
                        let count = |s: &str| d.runs.get(s).copied().unwrap_or(0);
                        view! {
                            <p class="muted">{d.tenant.name.clone()}" · "{t("your role:")}" "<strong data-test="my-role">{d.tenant.role.as_str()}</strong></p>
                            <h2>{t("Runs today (UTC)")}</h2>
                            <div class="stats">
                                <a class="stat" href=runs_href("") data-test="stat-runs">
                                    <span class="value">{total}</span><span class="label">{t("runs")}</span>
                                </a>
                                {["running", "succeeded", "failed", "queued", "cancelled"].into_iter().map(|s| view! {
                                    <a class=format!("stat stat-{s}") href=runs_href(s) data-test=format!("stat-{s}")>
                                        <span class="value">{count(s)}</span>
                                        <span class="label">{move || tr(lang(), crate::components::state_label(s))}</span>
                                    </a>
                                }).collect_view()}
                                <a class="stat" href=runs_href("failed") data-test="stat-success-rate" title=t("The failed runs")>
                                    <span class="value">{d.success_rate.map_or_else(|| "—".to_owned(), |r| format!("{:.0}%", r * 100.0))}</span>
                                    <span class="label">{t("success rate")}</span>
                                </a>
                                <a class="stat" href=format!("/t/{}/runs?since={since}&trigger=schedule", d.tenant.slug) data-test="stat-delay">
                                    <span class="value small-value">
                                        {d.schedule_delay_p50.map_or_else(|| "—".to_owned(), crate::time::duration)}
                                        " / "
                                        {d.schedule_delay_p95.map_or_else(|| "—".to_owned(), crate::time::duration)}
                                    </span>
                                    <span class="label">{t("scheduling delay p50 / p95")}</span>
                                </a>
                            </div>
                            <div class="two-col">
                                <section>
                                    <h2>{t("Queue by pool")}</h2>
                                    {if d.queue.is_empty() {
                                        view! { <p class="muted" data-test="queue-empty">{t("Nothing is waiting.")}</p> }.into_any()
                                    } else {
                                        view! {
                                            <table class="table compact" data-test="queue">
                                                <tbody>{d.queue.iter().map(|q| view! {
                                                    <tr><td><a href=format!("/t/{}/workers#pool-{}", d.tenant.slug, q.pool)><code>{q.pool.clone()}</code></a></td><td>{q.queued}</td></tr>
                                                }).collect_view()}</tbody>
                                            </table>
                                        }.into_any()
                                    }}
                                </section>
                                <section>
                                    <h2>{t("Failing workflows")}</h2>
                                    {if d.failing.is_empty() {
                                        view! { <p class="muted" data-test="failing-none">{t("No failed runs today.")}</p> }.into_any()
                                    } else {
                                        view! {
                                            <table class="table compact" data-test="failing">
                                                <tbody>{d.failing.iter().map(|f| view! {
                                                    <tr>
                                                        <td><a href=format!("/t/{}/workflows/{}", d.tenant.slug, f.id)>{f.name.clone()}</a></td>
                                                        <td><a href=format!("/t/{}/runs?since={since}&workflow={}&state=failed", d.tenant.slug, f.id)>{f.failed_runs}" "{move || tr(lang(), "failed")}</a></td>
                                                    </tr>
                                                }).collect_view()}</tbody>
                                            </table>
                                        }.into_any()
                                    }}
                                </section>
                            </div>
                            <div class="stats">
                                <a class="stat" href=format!("/t/{}/settings/members", d.tenant.slug)>
                                    <span class="value" data-test="stat-members">{d.members}</span>
                                    <span class="label">{t("members")}</span>
                                </a>
                                <a class="stat" href=format!("/t/{}/workflows", d.tenant.slug)>
                                    <span class="value" data-test="stat-projects">{d.projects}</span>
                                    <span class="label">{t("projects")}</span>
                                </a>
                                <div class="stat">
                                    <span class=if d.shard_ok { "value ok" } else { "value bad" } data-test="stat-database">
                                        {if d.shard_ok { t("healthy") } else { t("unreachable") }}
                                    </span>
                                    <span class="label">{t("tenant database")}</span>
                                </div>
                            </div>
                            <p class="muted small">
                                "Orrery "{d.server_version.clone()}" · "{t("updated")}" "
                                <time data-test="server-time" datetime=d.server_time.to_rfc3339()>
                                    {d.server_time.format("%H:%M:%S UTC").to_string()}
                                </time>
                            </p>
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
    .into_any()
}
