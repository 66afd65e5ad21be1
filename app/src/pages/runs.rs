use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn RunsPage() -> impl IntoView {
    view! {
        <Title text="Runs"/>
        <h1>"Runs"</h1>
        <div class="empty">
            <p>"No runs yet."</p>
            <p class="muted">"Runs of this tenant's workflows appear here, newest first, as soon as a workflow is triggered or scheduled."</p>
        </div>
    }
}
