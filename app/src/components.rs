//! The frame around every tenant page, and small shared pieces.

use api_types::Me;
use leptos::prelude::*;
use leptos_router::components::{A, Outlet};
use leptos_router::hooks::{use_location, use_navigate, use_params_map};
use model::Role;

use crate::api::{ConsoleError, Logout, get_me};

/// What the pages under `/t/{tenant}` know about where they are.
#[derive(Clone, Copy)]
pub struct TenantContext {
    /// The tenant slug from the URL.
    pub slug: Memo<String>,
    /// The caller's role in it, once known.
    pub role: Memo<Option<Role>>,
}

pub fn use_tenant() -> TenantContext {
    expect_context::<TenantContext>()
}

/// Navigation, tenant switcher and account menu around the current page.
#[component]
pub fn Frame() -> impl IntoView {
    let params = use_params_map();
    let slug = Memo::new(move |_| params.read().get("tenant").unwrap_or_default());
    let me = Resource::new(|| (), |_| get_me());
    let role = Memo::new(move |_| {
        me.get().and_then(|r| r.ok()).and_then(|m: Me| m.tenants.iter().find(|t| t.slug == slug.get()).map(|t| t.role))
    });
    provide_context(TenantContext { slug, role });
    let logout = ServerAction::<Logout>::new();
    let href = move |rest: &str| format!("/t/{}{rest}", slug.get());

    view! {
        <div class="frame">
            <header class="topbar">
                <a class="brand" href=move || href("")>
                    <span class="brand-mark" aria-hidden="true"></span>
                    "Orrery"
                </a>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        match me.await {
                            Ok(me) => view! { <TenantSwitcher me=me.clone() current=slug/> <Account me/> }.into_any(),
                            Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                        }
                    })}
                </Transition>
                <ActionForm action=logout attr:class="logout">
                    <button type="submit" class="button subtle" data-test="logout">"Sign out"</button>
                </ActionForm>
            </header>
            <nav class="sidebar" aria-label="Main">
                <A href=move || href("") exact=true>"Dashboard"</A>
                <A href=move || href("/workflows")>"Workflows"</A>
                <A href=move || href("/runs")>"Runs"</A>
                <A href=move || href("/workers")>"Workers"</A>
                <A href=move || href("/settings/members")>"Settings"</A>
            </nav>
            <main class="content">
                <Outlet/>
            </main>
        </div>
    }
}

#[component]
fn TenantSwitcher(me: Me, current: Memo<String>) -> impl IntoView {
    let navigate = use_navigate();
    let on_change = move |ev| {
        let slug = event_target_value(&ev);
        navigate(&format!("/t/{slug}"), Default::default());
    };
    let known = me.tenants.iter().any(|t| t.slug == current.get_untracked());
    view! {
        <label class="switcher">
            <span class="visually-hidden">"Tenant"</span>
            <select data-test="tenant-switcher" on:change=on_change prop:value=move || current.get()>
                {(!known).then(|| view! { <option value="" selected=true>"Choose a tenant"</option> })}
                {me.tenants.into_iter().map(|t| {
                    let selected = t.slug == current.get_untracked();
                    view! { <option value=t.slug.clone() selected=selected>{t.name.clone()}" ("{t.role.as_str()}")"</option> }
                }).collect_view()}
            </select>
        </label>
    }
}

#[component]
fn Account(me: Me) -> impl IntoView {
    view! {
        <span class="account" data-test="account" title=me.user.email.clone()>
            {me.user.display_name.clone()}
        </span>
    }
}

/// Shows an error. An expired session sends the browser to the login page, and back here after.
#[component]
pub fn ErrorNotice(error: ConsoleError) -> impl IntoView {
    if error.is_unauthenticated() {
        let location = use_location();
        let next = location.pathname.get_untracked();
        let target = format!("/login?next={}", urlencode(&next));
        #[cfg(feature = "hydrate")]
        {
            let navigate = use_navigate();
            let target = target.clone();
            request_animation_frame(move || navigate(&target, Default::default()));
        }
        return view! {
            <div class="notice warn" role="alert">
                "Your session has ended. " <a href=target>"Sign in again"</a>
            </div>
        }
        .into_any();
    }
    let class = if error.is_forbidden() { "notice forbidden" } else { "notice error" };
    let title = match error.code.as_str() {
        "forbidden" => "Not allowed",
        "tenant_not_found" => "No such tenant",
        _ => "Something went wrong",
    };
    view! {
        <div class=class role="alert" data-code=error.code.clone()>
            <strong>{title}</strong>
            <p>{error.message.clone()}</p>
        </div>
    }
    .into_any()
}

/// Percent-encodes a path for a query parameter.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
