use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::Login;
use crate::i18n::t;

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let error = move || login.value().get().and_then(|r| r.err());
    // The person's own language and theme, for the pages that follow without a reload.
    let prefs = crate::i18n::use_prefs();
    Effect::new(move |_| {
        if let Some(Ok(Some(p))) = login.value().get() {
            prefs.set(p);
        }
    });
    view! {
        <Title text=t("Sign in")/>
        <div class="centered">
            <div class="card narrow login">
                <h1 class="brand"><span class="brand-mark" aria-hidden="true"></span>"Orrery"</h1>
                <ActionForm action=login>
                    <input type="hidden" name="next" prop:value=next/>
                    <label>
                        {t("Email")}
                        <input type="email" name="email" autocomplete="username" required=true autofocus=true data-test="email"/>
                    </label>
                    <label>
                        {t("Password")}
                        <input type="password" name="password" autocomplete="current-password" required=true data-test="password"/>
                    </label>
                    {move || error().map(|e| view! { <p class="notice error" role="alert" data-test="login-error">{e.message}</p> })}
                    <button type="submit" class="button primary" data-test="sign-in" disabled=move || login.pending().get()>
                        {move || if login.pending().get() { t("Signing in…")() } else { t("Sign in")() }}
                    </button>
                </ActionForm>
            </div>
        </div>
    }
    .into_any()
}
