//! The frame around every tenant page, and small shared pieces.

use api_types::Me;
use leptos::prelude::*;
use leptos_router::components::{A, Outlet};
use leptos_router::hooks::{use_location, use_navigate, use_params_map};
use model::Role;

use crate::api::{ConsoleError, Logout, SetPrefs, get_me};
use crate::i18n::{Lang, Prefs, Theme, k, t, tr, use_prefs};

/// What the pages under `/t/{tenant}` know about where they are.
#[derive(Clone, Copy)]
pub struct TenantContext {
    /// The tenant slug from the URL.
    pub slug: Memo<String>,
    /// The caller's role in it, once known.
    pub role: Memo<Option<Role>>,
    /// The caller is a platform admin (drains workers, sets pools).
    pub platform_admin: Memo<bool>,
}

pub fn use_tenant() -> TenantContext {
    expect_context::<TenantContext>()
}

impl TenantContext {
    /// A console path inside this tenant.
    pub fn href(&self, rest: &str) -> String {
        format!("/t/{}{rest}", self.slug.get())
    }

    /// May the caller do `action` on `object` here? (The server checks again.)
    pub fn may(&self, object: model::Object, action: model::Action) -> bool {
        self.role.get().is_some_and(|r| r.allows(object, action))
    }
}

/// Navigation, tenant switcher, preferences and account menu around the current page.
#[component]
pub fn Frame() -> impl IntoView {
    let params = use_params_map();
    let slug = Memo::new(move |_| params.read().get("tenant").unwrap_or_default());
    let me = Resource::new(|| (), |_| get_me());
    let role = Memo::new(move |_| {
        me.get().and_then(|r| r.ok()).and_then(|m: Me| m.tenants.iter().find(|t| t.slug == slug.get()).map(|t| t.role))
    });
    let platform_admin = Memo::new(move |_| me.get().and_then(|r| r.ok()).is_some_and(|m| m.user.platform_admin));
    provide_context(TenantContext { slug, role, platform_admin });
    let logout = ServerAction::<Logout>::new();
    let href = move |rest: &str| format!("/t/{}{rest}", slug.get());

    view! {
        <div class="frame">
            <a class="skip-link" href="#main">{t("Skip to content")}</a>
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
                <PrefsMenu/>
                <ActionForm action=logout attr:class="logout">
                    <button type="submit" class="button subtle" data-test="logout">{t("Sign out")}</button>
                </ActionForm>
            </header>
            <nav class="sidebar" aria-label=t("Main")>
                <A href=move || href("") exact=true>{t("Dashboard")}</A>
                <A href=move || href("/workflows")>{t("Workflows")}</A>
                <A href=move || href("/runs")>{t("Runs")}</A>
                <A href=move || href("/workers")>{t("Workers")}</A>
                <A href=move || href("/settings/members")>{t("Settings")}</A>
            </nav>
            // Pages know the caller's role as they render (buttons a role may not use are left
            // out), on the server and in the browser alike: they render once it is known.
            <main class="content" id="main">
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        let _ = me.await;
                        view! { <Outlet/> }
                    })}
                </Transition>
            </main>
        </div>
    }
    .into_any()
}

/// Language and theme, kept for the person (and shown at once).
#[component]
fn PrefsMenu() -> impl IntoView {
    let prefs = use_prefs();
    let save = ServerAction::<SetPrefs>::new();
    let set = move |p: Prefs| {
        prefs.set(p);
        save.dispatch(SetPrefs { prefs: p });
    };
    view! {
        <div class="prefs">
            <label>
                <span class="visually-hidden">{t("Language")}</span>
                <select data-test="language" aria-label=t("Language") prop:value=move || prefs.get().lang.code()
                    on:change=move |ev| {
                        if let Some(lang) = Lang::parse(&event_target_value(&ev)) {
                            set(Prefs { lang, ..prefs.get_untracked() });
                        }
                    }>
                    {Lang::ALL.into_iter().map(|l| view! {
                        <option value=l.code() selected=move || prefs.get().lang == l>{l.native()}</option>
                    }).collect_view()}
                </select>
            </label>
            <label>
                <span class="visually-hidden">{t("Theme")}</span>
                <select data-test="theme" aria-label=t("Theme") prop:value=move || prefs.get().theme.code()
                    on:change=move |ev| {
                        if let Some(theme) = Theme::parse(&event_target_value(&ev)) {
                            set(Prefs { theme, ..prefs.get_untracked() });
                        }
                    }>
                    {Theme::ALL.into_iter().map(|th| view! {
                        <option value=th.code() selected=move || prefs.get().theme == th>
                            {move || tr(prefs.get().lang, th.label())}
                        </option>
                    }).collect_view()}
                </select>
            </label>
        </div>
    }
    .into_any()
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
            <span class="visually-hidden">{t("Tenant")}</span>
            <select data-test="tenant-switcher" on:change=on_change prop:value=move || current.get()>
                {(!known).then(|| view! { <option value="" selected=true>{t("Choose a tenant")}</option> })}
                {me.tenants.into_iter().map(|t| {
                    let selected = t.slug == current.get_untracked();
                    view! { <option value=t.slug.clone() selected=selected>{t.name.clone()}" ("{t.role.as_str()}")"</option> }
                }).collect_view()}
            </select>
        </label>
    }
    .into_any()
}

#[component]
fn Account(me: Me) -> impl IntoView {
    view! {
        <span class="account" data-test="account" title=me.user.email.clone()>
            {me.user.display_name.clone()}
        </span>
    }
    .into_any()
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
                {t("Your session has ended.")}" " <a href=target>{t("Sign in again")}</a>
            </div>
        }
        .into_any();
    }
    let class = if error.is_forbidden() { "notice forbidden" } else { "notice error" };
    let title = match error.code.as_str() {
        "forbidden" => t("Not allowed"),
        "tenant_not_found" => t("No such tenant"),
        _ => t("Something went wrong"),
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

/// A run's, task's or attempt's state as a coloured label.
#[component]
pub fn StateBadge(#[prop(into)] state: Signal<String>) -> impl IntoView {
    view! {
        <span class=move || format!("badge state-{}", state.get()) data-state=move || state.get()>
            {move || tr(use_prefs().get().lang, state_label(&state.get()))}
        </span>
    }
    .into_any()
}

/// The English name of a state (the key of its translation).
pub fn state_label(state: &str) -> &'static str {
    match state {
        "pending" => k("pending"),
        "queued" => k("queued"),
        "running" => k("running"),
        "succeeded" => k("succeeded"),
        "failed" => k("failed"),
        "cancelled" => k("cancelled"),
        "skipped" => k("skipped"),
        "upstream_failed" => k("upstream failed"),
        "timed_out" => k("timed out"),
        "lost" => k("lost"),
        "paused" => k("paused"),
        _ => k("unknown"),
    }
}

/// A question before an action that destroys work. `on_yes` runs when the person confirms.
#[derive(Clone)]
pub struct Ask {
    pub title: &'static str,
    pub body: String,
    pub yes: &'static str,
    pub on_yes: Callback<()>,
}

/// The elements of a dialog that Tab moves between.
#[cfg(feature = "hydrate")]
const FOCUSABLE: &str = "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), \
    select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1'])";

/// A modal dialog. It takes the focus when it opens (its `autofocus` element, else its first
/// field or button), keeps Tab and Shift-Tab inside, closes on Escape or a click beside it, and
/// gives the focus back to what had it before. A browser honours `autofocus` only once a page,
/// so dialogs opened later would otherwise leave the focus (and Escape) behind them.
#[component]
pub fn Modal(
    close: Callback<()>,
    /// `dialog`, or `alertdialog` for a question that destroys work.
    #[prop(default = "dialog")]
    role: &'static str,
    /// Extra classes (`wide`).
    #[prop(optional)]
    class: &'static str,
    #[prop(optional)] test: &'static str,
    children: Children,
) -> impl IntoView {
    let node = NodeRef::<leptos::html::Div>::new();
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;
        let before = StoredValue::new_local(document().active_element());
        Effect::new(move |_| {
            let Some(el) = node.get() else { return };
            let first = el
                .query_selector("[autofocus]")
                .ok()
                .flatten()
                .or_else(|| el.query_selector(FOCUSABLE).ok().flatten())
                .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
            let _ = first.map_or_else(|| el.focus(), |f| f.focus());
        });
        on_cleanup(move || {
            if let Some(e) = before.try_get_value().flatten().and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
                let _ = e.focus();
            }
        });
    }
    let on_key = move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
        "Escape" => {
            ev.stop_propagation();
            close.run(());
        }
        #[cfg(feature = "hydrate")]
        "Tab" => {
            use leptos::wasm_bindgen::JsCast;
            let Some(el) = node.get_untracked() else { return };
            let Ok(all) = el.query_selector_all(FOCUSABLE) else { return };
            let items: Vec<web_sys::HtmlElement> =
                (0..all.length()).filter_map(|i| all.item(i)?.dyn_into::<web_sys::HtmlElement>().ok()).collect();
            let (Some(first), Some(last)) = (items.first(), items.last()) else { return };
            let active = document().active_element();
            let at =
                |e: &web_sys::HtmlElement| active.as_ref().is_some_and(|a| a == e.unchecked_ref::<web_sys::Element>());
            if ev.shift_key() && at(first) {
                ev.prevent_default();
                let _ = last.focus();
            } else if !ev.shift_key() && at(last) {
                ev.prevent_default();
                let _ = first.focus();
            }
        }
        _ => {}
    };
    view! {
        <div class="modal-backdrop" on:click=move |_| close.run(())>
            <div node_ref=node class=format!("modal {class}") role=role aria-modal="true" tabindex="-1"
                data-test=(!test.is_empty()).then_some(test)
                on:click=|ev| ev.stop_propagation() on:keydown=on_key>
                {children()}
            </div>
        </div>
    }
}

/// The page's confirmation dialog: set the signal to ask.
#[component]
pub fn ConfirmDialog(ask: RwSignal<Option<Ask>>) -> impl IntoView {
    let lang = move || use_prefs().get().lang;
    let close = Callback::new(move |()| ask.set(None));
    move || {
        ask.get().map(|a| {
            let on_yes = a.on_yes;
            view! {
                <Modal close role="alertdialog" test="confirm">
                    <h3>{tr(lang(), a.title)}</h3>
                    <p>{a.body.clone()}</p>
                    <div class="modal-actions">
                        <button class="button" data-test="confirm-no" on:click=move |_| ask.set(None)>{t("Keep it")}</button>
                        <button class="button danger-fill" data-test="confirm-yes" autofocus=true
                            on:click=move |_| { ask.set(None); on_yes.run(()); }>{tr(lang(), a.yes)}</button>
                    </div>
                </Modal>
            }
        })
    }
}
