pub mod dashboard;
pub mod editor;
pub mod log;
pub mod login;
pub mod run;
pub mod runs;
pub mod settings;
pub mod workers;
pub mod workflows;

use leptos::prelude::*;
use leptos_meta::Title;

use crate::i18n::t;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text=t("Not found")/>
        <div class="centered">
            <div class="card narrow">
                <h1>{t("Not found")}</h1>
                <p>{t("There is no page at this address.")}</p>
                <a class="button" href="/">{t("Go to the dashboard")}</a>
            </div>
        </div>
    }
    .into_any()
}
