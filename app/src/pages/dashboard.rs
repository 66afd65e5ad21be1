use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::get_dashboard;
use crate::components::{ErrorNotice, use_tenant};

/// How often the dashboard refreshes its numbers.
const REFRESH_MS: u64 = 5_000;

#[component]
pub fn DashboardPage() -> impl IntoView {
    let tenant = use_tenant();
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
        <Title text="Dashboard"/>
        <h1>"Dashboard"</h1>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok(d) => view! {
                        <p class="muted">{d.tenant.name.clone()}" · your role: "<strong data-test="my-role">{d.tenant.role.as_str()}</strong></p>
                        <div class="stats">
                            <a class="stat" href=format!("/t/{}/settings/members", d.tenant.slug)>
                                <span class="value" data-test="stat-members">{d.members}</span>
                                <span class="label">"members"</span>
                            </a>
                            <a class="stat" href=format!("/t/{}/workflows", d.tenant.slug)>
                                <span class="value" data-test="stat-projects">{d.projects}</span>
                                <span class="label">"projects"</span>
                            </a>
                            <div class="stat">
                                <span class=if d.shard_ok { "value ok" } else { "value bad" } data-test="stat-database">
                                    {if d.shard_ok { "healthy" } else { "unreachable" }}
                                </span>
                                <span class="label">"tenant database"</span>
                            </div>
                        </div>
                        <p class="muted small">
                            "Orrery "{d.server_version.clone()}" · updated "
                            <time data-test="server-time" datetime=d.server_time.to_rfc3339()>
                                {d.server_time.format("%H:%M:%S UTC").to_string()}
                            </time>
                        </p>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}
