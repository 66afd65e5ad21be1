//! The YAML view beside the graph: the same document as text. Typing changes the graph as soon
//! as the text parses (what you typed stays as you typed it); a change on the graph rewrites
//! the text. A text that does not parse says which line and leaves the graph as it was.

use leptos::prelude::*;

use super::state::Editor;
use crate::graph::{from_yaml, to_yaml};
use crate::i18n::t;

/// How long typing must pause before the text is read.
const SETTLE_MS: u64 = 350;

#[component]
pub fn YamlView(ed: Editor) -> impl IntoView {
    let text = RwSignal::new(to_yaml(&ed.spec.get_untracked()));
    let error = RwSignal::new(None::<(Option<usize>, String)>);
    // Set when the text itself changed the document, so the text is not rewritten under the cursor.
    let from_text = StoredValue::new(false);
    let pending = StoredValue::new(None::<TimeoutHandle>);
    Effect::new(move |_| {
        let spec = ed.spec.get();
        if from_text.get_value() {
            from_text.set_value(false);
            return;
        }
        text.set(to_yaml(&spec));
        error.set(None);
    });
    let read = move || match from_yaml(&text.get_untracked()) {
        Ok(spec) => {
            error.set(None);
            if ed.spec.with_untracked(|s| *s != spec) {
                from_text.set_value(true);
                ed.replace_spec(spec);
            }
        }
        Err(e) => error.set(Some(e)),
    };
    let on_input = move |ev| {
        text.set(event_target_value(&ev));
        if let Some(h) = pending.get_value() {
            h.clear();
        }
        pending.set_value(set_timeout_with_handle(read, std::time::Duration::from_millis(SETTLE_MS)).ok());
    };
    let area = NodeRef::<leptos::html::Textarea>::new();
    let go_to_line = move |line: usize| {
        if let Some(el) = area.get_untracked() {
            let value = el.value();
            let start: usize = value.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
            let end = start + value[start..].find('\n').unwrap_or(value.len() - start);
            let _ = el.focus();
            let _ = el.set_selection_range(start as u32, end as u32);
        }
    };
    view! {
        <div class="yaml-view">
            <textarea node_ref=area class="code yaml" data-test="yaml" spellcheck="false" aria-label=t("Workflow as YAML")
                readonly=move || !ed.editable.get() prop:value=move || text.get() on:input=on_input on:blur=move |_| read()></textarea>
            {move || error.get().map(|(line, message)| view! {
                <div class="notice error yaml-error" role="alert" data-test="yaml-error">
                    {line.map(|l| view! {
                        <button class="button tiny" on:click=move |_| go_to_line(l)>{t("line")}" "{l}</button>" "
                    })}
                    {message}
                </div>
            })}
        </div>
    }
    .into_any()
}
