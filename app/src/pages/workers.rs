use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn WorkersPage() -> impl IntoView {
    view! {
        <Title text="Workers"/>
        <h1>"Workers"</h1>
        <div class="empty">
            <p>"No workers have connected."</p>
            <p class="muted">"Workers connect to this server on their own; each appears here with its pool, region and load."</p>
        </div>
    }
}
