use api_types::Member;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use model::{Action, Object, Role};

use crate::api::{CreateToken, InviteMember, RemoveMember, RevokeToken, SetMemberRole, list_members, list_tokens};
use crate::components::{ErrorNotice, use_tenant};
use crate::i18n::{t, tr, use_prefs};

#[component]
fn SettingsTabs() -> impl IntoView {
    let tenant = use_tenant();
    view! {
        <nav class="tabs" aria-label=t("Settings")>
            <A href=move || format!("/t/{}/settings/members", tenant.slug.get())>{t("Members")}</A>
            <A href=move || format!("/t/{}/settings/tokens", tenant.slug.get())>{t("API tokens")}</A>
        </nav>
    }
    .into_any()
}

/// Members and their roles. Only roles that may manage members see it; others get a clear refusal.
#[component]
pub fn MembersPage() -> impl IntoView {
    let tenant = use_tenant();
    let invite = ServerAction::<InviteMember>::new();
    let set_role = ServerAction::<SetMemberRole>::new();
    let remove = ServerAction::<RemoveMember>::new();
    let members = Resource::new(
        move || (tenant.slug.get(), invite.version().get(), set_role.version().get(), remove.version().get()),
        |(t, ..)| list_members(t),
    );
    let my_role = move || tenant.role.get();
    let may_write = move || my_role().is_some_and(|r| r.allows(Object::Member, Action::Write));
    let grantable =
        move || Role::ALL.into_iter().filter(|r| my_role().is_some_and(|m| m.may_grant(*r))).collect::<Vec<_>>();
    let action_error = move || {
        [
            invite.value().get().and_then(|r| r.err()),
            set_role.value().get().and_then(|r| r.err()),
            remove.value().get().and_then(|r| r.err()),
        ]
        .into_iter()
        .flatten()
        .next()
    };

    view! {
        <Title text=t("Members")/>
        <h1>{t("Settings")}</h1>
        <SettingsTabs/>
        <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
            {move || Suspend::new(async move {
                match members.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok(list) => view! { <MemberTable list set_role remove may_write=may_write() grantable=grantable()/> }.into_any(),
                }
            })}
        </Transition>
        {move || action_error().map(|e| view! { <ErrorNotice error=e/> })}
        {move || invite.value().get().and_then(|r| r.ok()).map(|inv| view! {
            <div class="notice ok" role="status" data-test="invited">
                <p>{inv.member.email.clone()}" is now "<strong>{inv.member.role.as_str()}</strong>"."</p>
                {inv.initial_password.map(|p| view! {
                    <p>{t("Their initial password (shown once, give it to them):")}" "<code data-test="initial-password">{p}</code></p>
                })}
            </div>
        })}
        <Show when=may_write>
            <section class="card">
                <h3>{t("Invite a member")}</h3>
                <ActionForm action=invite attr:class="inline-form">
                    <input type="hidden" name="tenant" prop:value=move || tenant.slug.get()/>
                    <label class="grow">{t("Email")}<input type="email" name="email" required=true data-test="invite-email"/></label>
                    <label>{t("Role")}
                        <select name="role" data-test="invite-role">
                            {move || grantable().into_iter().map(|r| view! {
                                <option value=r.as_str() selected=r == Role::Viewer>{r.as_str()}</option>
                            }).collect_view()}
                        </select>
                    </label>
                    <button class="button primary" type="submit" data-test="invite-submit">{t("Invite")}</button>
                </ActionForm>
            </section>
        </Show>
    }
    .into_any()
}

#[component]
fn MemberTable(
    list: Vec<Member>,
    set_role: ServerAction<SetMemberRole>,
    remove: ServerAction<RemoveMember>,
    may_write: bool,
    grantable: Vec<Role>,
) -> impl IntoView {
    let tenant = use_tenant();
    view! {
        <table class="table" data-test="members">
            <thead><tr><th>{t("Member")}</th><th>{t("Email")}</th><th>{t("Role")}</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|m| {
                    let editable = may_write && grantable.contains(&m.role);
                    let user = m.user_id;
                    let options = grantable.clone();
                    let email = m.email.clone();
                    view! {
                        <tr data-member=email.clone()>
                            <td>{m.display_name.clone()}</td>
                            <td>{m.email.clone()}</td>
                            <td>
                                {if editable {
                                    view! {
                                        <select
                                            aria-label=format!("Role of {email}")
                                            data-test="role-select"
                                            on:change=move |ev| {
                                                if let Ok(role) = event_target_value(&ev).parse::<Role>() {
                                                    set_role.dispatch(SetMemberRole { tenant: tenant.slug.get_untracked(), user, role });
                                                }
                                            }
                                        >
                                            {options.iter().map(|r| view! {
                                                <option value=r.as_str() selected=*r == m.role>{r.as_str()}</option>
                                            }).collect_view()}
                                        </select>
                                    }.into_any()
                                } else {
                                    view! { <span class="role" data-test="role">{m.role.as_str()}</span> }.into_any()
                                }}
                            </td>
                            <td>
                                {editable.then(|| view! {
                                    <button class="button subtle danger" on:click=move |_| {
                                        if confirm_removal() {
                                            remove.dispatch(RemoveMember { tenant: tenant.slug.get_untracked(), user });
                                        }
                                    }>{t("Remove")}</button>
                                })}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

fn confirm_removal() -> bool {
    #[cfg(feature = "hydrate")]
    {
        window().confirm_with_message("Remove this member from the tenant?").unwrap_or(false)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        false
    }
}

/// The signed-in user's API tokens.
#[component]
pub fn TokensPage() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let tokens = Resource::new(move || (create.version().get(), revoke.version().get()), |_| list_tokens());
    view! {
        <Title text=t("API tokens")/>
        <h1>{t("Settings")}</h1>
        <SettingsTabs/>
        <p class="muted">{t("Tokens act as you, with your roles, from scripts and the CLI:")}" "<code>"Authorization: Bearer orr_…"</code></p>
        {move || create.value().get().map(|r| match r {
            Ok(made) => view! {
                <div class="notice ok" role="status">
                    <p>{t("Token created. Copy it now; it is not shown again:")}" "<strong>{made.token.name.clone()}</strong></p>
                    <code class="secret" data-test="token-secret">{made.secret.clone()}</code>
                </div>
            }.into_any(),
            Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
        })}
        <Transition fallback=|| view! { <p class="muted">{t("Loading…")}</p> }>
            {move || Suspend::new(async move {
                match tokens.await {
                    Err(e) => view! { <ErrorNotice error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <div class="empty"><p>{t("No tokens.")}</p></div> }.into_any(),
                    Ok(list) => view! {
                        <table class="table">
                            <thead><tr><th>{t("Name")}</th><th>{t("Created")}</th><th>{t("Expires")}</th><th>{t("Last used")}</th><th></th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|tok| {
                                    let id = tok.id;
                                    let lang = use_prefs().get_untracked().lang;
                                    view! {
                                        <tr>
                                            <td>{tok.name}</td>
                                            <td class="muted">{tok.created_at.format("%Y-%m-%d %H:%M").to_string()}</td>
                                            <td class="muted">{tok.expires_at.map_or_else(|| tr(lang, "never").to_owned(), |d| d.format("%Y-%m-%d").to_string())}</td>
                                            <td class="muted">{tok.last_used_at.map_or_else(|| tr(lang, "never").to_owned(), |d| d.format("%Y-%m-%d %H:%M").to_string())}</td>
                                            <td><button class="button subtle danger" on:click=move |_| { revoke.dispatch(RevokeToken { id }); }>{t("Revoke")}</button></td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Transition>
        <section class="card">
            <h3>{t("New token")}</h3>
            <ActionForm action=create attr:class="inline-form">
                <label class="grow">{t("Name")}<input name="name" required=true placeholder="ci-deploy"/></label>
                <label>{t("Expires in days")}<input name="expires_in_days" type="number" min="1" placeholder=t("never")/></label>
                <button class="button primary" type="submit">{t("Create token")}</button>
            </ActionForm>
        </section>
    }
    .into_any()
}
