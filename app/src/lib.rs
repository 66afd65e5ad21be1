#![doc = include_str!("../README.md")]
#![recursion_limit = "512"]

pub mod api;
mod components;
pub mod graph;
pub mod i18n;
mod live;
mod pages;
mod time;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{SsrMode, path};

pub use api::ConsoleError;
pub use components::urlencode as urlencode_path;
use i18n::Prefs;

/// The HTML document the server renders around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let prefs = initial_prefs();
    view! {
        <!DOCTYPE html>
        <html lang=prefs.lang.code() data-theme=prefs.theme.code()>
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='3' fill='%23e0a030'/%3E%3Ccircle cx='8' cy='8' r='6.5' fill='none' stroke='%23567' stroke-width='1'/%3E%3C/svg%3E"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The page's language and theme: on the server from the request (cookies, else the browser's
/// languages); in the browser from what the server wrote on `<html>`, so hydration agrees.
fn initial_prefs() -> Prefs {
    #[cfg(feature = "ssr")]
    {
        api::request_prefs_for_shell()
    }
    #[cfg(not(feature = "ssr"))]
    {
        #[cfg(feature = "hydrate")]
        {
            let root = document().document_element();
            let attr = |name: &str| root.as_ref().and_then(|r| r.get_attribute(name)).unwrap_or_default();
            Prefs {
                lang: i18n::Lang::parse(&attr("lang")).unwrap_or_default(),
                theme: i18n::Theme::parse(&attr("data-theme")).unwrap_or_default(),
            }
        }
        #[cfg(not(feature = "hydrate"))]
        {
            Prefs::default()
        }
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let prefs = i18n::provide_prefs(initial_prefs());
    // A change of language or theme shows at once, without a reload.
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let p = prefs.0.get();
        if let Some(root) = document().document_element() {
            let _ = root.set_attribute("lang", p.lang.code());
            let _ = root.set_attribute("data-theme", p.theme.code());
        }
    });
    let _ = prefs;
    view! {
        <Stylesheet id="orrery" href="/pkg/orrery.css"/>
        <Title formatter=|page: String| if page.is_empty() { "Orrery".to_owned() } else { format!("{page} · Orrery") }/>
        // Pages under a tenant render whole (not streamed) so a refusal or a missing tenant
        // answers with its real status (403, 404), not a 200 carrying an error.
        <Router>
            <Routes fallback=pages::NotFound>
                <Route path=path!("/login") view=pages::login::LoginPage/>
                <ParentRoute path=path!("/t/:tenant") view=components::Frame ssr=SsrMode::Async>
                    <Route path=path!("") view=pages::dashboard::DashboardPage ssr=SsrMode::Async/>
                    <Route path=path!("workflows") view=pages::workflows::WorkflowsPage ssr=SsrMode::Async/>
                    <Route path=path!("workflows/new") view=pages::editor::NewWorkflowPage ssr=SsrMode::Async/>
                    <Route path=path!("workflows/:id") view=pages::editor::WorkflowPage ssr=SsrMode::Async/>
                    <Route path=path!("runs") view=pages::runs::RunsPage ssr=SsrMode::Async/>
                    <Route path=path!("runs/:run") view=pages::run::RunPage ssr=SsrMode::Async/>
                    <Route path=path!("workers") view=pages::workers::WorkersPage ssr=SsrMode::Async/>
                    <Route path=path!("settings") view=pages::settings::MembersPage ssr=SsrMode::Async/>
                    <Route path=path!("settings/members") view=pages::settings::MembersPage ssr=SsrMode::Async/>
                    <Route path=path!("settings/tokens") view=pages::settings::TokensPage ssr=SsrMode::Async/>
                </ParentRoute>
            </Routes>
        </Router>
    }
    .into_any()
}
