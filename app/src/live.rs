//! Server-sent events in the browser: a run's changes and a task's log arrive as the server sends
//! them, without polling from the page. The stream closes when the server ends it, or when the
//! part of the page that opened it goes away.

/// Opens `url` as an event stream and hands each event of the given names (and its data) to
/// `on`. Nothing happens on the server side of rendering.
pub fn follow(url: &str, events: &'static [&'static str], on: impl Fn(&str, String) + Clone + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::prelude::on_cleanup;
        use leptos::wasm_bindgen::JsCast;
        use leptos::wasm_bindgen::closure::Closure;

        let Ok(source) = web_sys::EventSource::new(url) else { return };
        let mut keep = Vec::new();
        for &name in events {
            let on = on.clone();
            let src = source.clone();
            let cb = Closure::<dyn Fn(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                let data = e.data().as_string().unwrap_or_default();
                if name == "end" {
                    src.close();
                }
                on(name, data);
            });
            let _ = source.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
            keep.push(cb);
        }
        // The browser reconnects a dropped stream by itself; a stream the server ended with `end`
        // was closed above.
        let source = send_wrapper::SendWrapper::new((source, keep));
        on_cleanup(move || source.0.close());
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (url, events, on);
    }
}
