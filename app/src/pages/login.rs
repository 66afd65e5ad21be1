use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::Login;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let error = move || login.value().get().and_then(|r| r.err());
    view! {
        <Title text="Sign in"/>
        <div class="centered">
            <div class="card narrow login">
                <h1 class="brand"><span class="brand-mark" aria-hidden="true"></span>"Orrery"</h1>
                <ActionForm action=login>
                    <input type="hidden" name="next" prop:value=next/>
                    <label>
                        "Email"
                        <input type="email" name="email" autocomplete="username" required=true autofocus=true data-test="email"/>
                    </label>
                    <label>
                        "Password"
                        <input type="password" name="password" autocomplete="current-password" required=true data-test="password"/>
                    </label>
                    {move || error().map(|e| view! { <p class="notice error" role="alert" data-test="login-error">{e.message}</p> })}
                    <button type="submit" class="button primary" data-test="sign-in" disabled=move || login.pending().get()>
                        {move || if login.pending().get() { "Signing in…" } else { "Sign in" }}
                    </button>
                </ActionForm>
            </div>
        </div>
    }
}
