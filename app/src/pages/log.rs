//! A task attempt's log: streamed live while the attempt runs (server-sent events), following the
//! end unless you scroll up; jump to the start or the end; search with every match marked and
//! stepped through.

use leptos::prelude::*;
use model::RunId;

use crate::i18n::{t, tr, use_prefs};

/// The pieces of `text` around each match of `needle` (case-insensitive): (text, is a match).
pub fn split_matches<'a>(text: &'a str, needle: &str) -> Vec<(&'a str, bool)> {
    if needle.is_empty() {
        return vec![(text, false)];
    }
    let lower = text.to_lowercase();
    let needle = needle.to_lowercase();
    // Lower-casing can change byte lengths outside ASCII; match on the original then.
    if lower.len() != text.len() {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find(needle.as_str()) {
            out.push((&rest[..i], false));
            out.push((&rest[i..i + needle.len()], true));
            rest = &rest[i + needle.len()..];
        }
        out.push((rest, false));
        return out;
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find(&needle) {
        let start = at + i;
        out.push((&text[at..start], false));
        out.push((&text[start..start + needle.len()], true));
        at = start + needle.len();
    }
    out.push((&text[at..], false));
    out
}

#[component]
pub fn LogViewer(tenant: String, run: RunId, task: String, attempt: Option<i32>) -> impl IntoView {
    let lang = move || use_prefs().get().lang;
    let text = RwSignal::new(String::new());
    let ended = RwSignal::new(None::<String>);
    let follow = RwSignal::new(true);
    let search = RwSignal::new(String::new());
    let current = RwSignal::new(0usize);
    let pre = NodeRef::<leptos::html::Pre>::new();
    let to_end = move || {
        if let Some(el) = pre.get_untracked() {
            el.set_scroll_top(el.scroll_height());
        }
    };
    let attempt_q = attempt.map(|a| format!("?attempt={a}")).unwrap_or_default();
    let url = format!(
        "/api/v1/tenants/{tenant}/runs/{run}/tasks/{}/logs/stream{attempt_q}",
        crate::components::urlencode(&task)
    );
    crate::live::follow(&url, &["message", "end"], move |event, data| {
        if event == "end" {
            ended.set(Some(data));
            return;
        }
        text.update(|t| t.push_str(&data));
        if follow.get_untracked() {
            request_animation_frame(to_end);
        }
    });
    let matches = move || {
        let q = search.get();
        if q.chars().count() < 2 { 0 } else { text.with(|t| split_matches(t, &q).iter().filter(|(_, m)| *m).count()) }
    };
    let step = move |by: isize| {
        let n = matches();
        if n == 0 {
            return;
        }
        let next = (current.get_untracked() as isize + by).rem_euclid(n as isize) as usize;
        current.set(next);
        follow.set(false);
        request_animation_frame(move || {
            if let Some(el) = pre.get_untracked()
                && let Ok(Some(m)) = el.query_selector("mark.current")
            {
                let opts = web_sys::ScrollIntoViewOptions::new();
                opts.set_block(web_sys::ScrollLogicalPosition::Center);
                m.scroll_into_view_with_scroll_into_view_options(&opts);
            }
        });
    };
    let body = move || {
        let q = search.get();
        if q.chars().count() < 2 {
            return text.get().into_any();
        }
        let cur = current.get();
        text.with(|t| {
            let mut k = 0;
            split_matches(t, &q)
                .into_iter()
                .map(|(s, m)| {
                    if m {
                        let class = if k == cur { "current" } else { "" };
                        k += 1;
                        view! { <mark class=class>{s.to_owned()}</mark> }.into_any()
                    } else {
                        s.to_owned().into_any()
                    }
                })
                .collect_view()
                .into_any()
        })
    };
    view! {
        <div class="log" data-test="log">
            <div class="log-bar">
                <button class="button tiny" data-test="log-start" on:click=move |_| { follow.set(false); if let Some(el) = pre.get_untracked() { el.set_scroll_top(0); } }>{t("Start")}</button>
                <button class="button tiny" data-test="log-end" on:click=move |_| { follow.set(true); to_end(); }>{t("End")}</button>
                <label class="inline small"><input type="checkbox" prop:checked=move || follow.get() on:change=move |e| { follow.set(event_target_checked(&e)); if follow.get_untracked() { to_end(); } }/>" "{t("Follow")}</label>
                <input type="search" class="log-search" data-test="log-search" placeholder=t("Search the log") aria-label=t("Search the log")
                    prop:value=move || search.get() on:input=move |e| { search.set(event_target_value(&e)); current.set(0); }
                    on:keydown=move |e| if e.key() == "Enter" { e.prevent_default(); step(if e.shift_key() { -1 } else { 1 }); }/>
                {move || (search.get().chars().count() >= 2).then(|| view! {
                    <span class="small muted" data-test="log-matches">{move || { let n = matches(); if n == 0 { tr(lang(), "no match").to_owned() } else { format!("{}/{n}", current.get() + 1) } }}</span>
                    <button class="button tiny" on:click=move |_| step(-1) aria-label=t("Previous match")>"↑"</button>
                    <button class="button tiny" on:click=move |_| step(1) aria-label=t("Next match")>"↓"</button>
                })}
                <span class="spacer"></span>
                {move || ended.get().map(|s| view! { <span class="muted small" data-test="log-ended">{t("ended")}": "{s}</span> })}
            </div>
            <pre node_ref=pre class="log-text" data-test="log-text" tabindex="0"
                on:scroll=move |_| {
                    if let Some(el) = pre.get_untracked() {
                        let at_end = el.scroll_top() + el.client_height() >= el.scroll_height() - 4;
                        if follow.get_untracked() != at_end { follow.set(at_end); }
                    }
                }>{body}</pre>
        </div>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_are_found_without_regard_to_case() {
        let parts = split_matches("Error: x\nerror again", "error");
        assert_eq!(parts, vec![("", false), ("Error", true), (": x\n", false), ("error", true), (" again", false)]);
        assert_eq!(split_matches("abc", ""), vec![("abc", false)]);
        assert_eq!(split_matches("日志 error", "error").iter().filter(|(_, m)| *m).count(), 1);
    }
}
