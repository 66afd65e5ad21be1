pub mod dashboard;
pub mod login;
pub mod runs;
pub mod settings;
pub mod workers;
pub mod workflows;

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found"/>
        <div class="centered">
            <div class="card narrow">
                <h1>"Not found"</h1>
                <p>"There is no page at this address."</p>
                <a class="button" href="/">"Go to the dashboard"</a>
            </div>
        </div>
    }
}
