//! The graph canvas (SVG): tasks as boxes, dependencies as curves. In the editor it adds,
//! connects, moves, selects, deletes, copies and pastes; elsewhere (a run, a diff) it only shows,
//! coloured by `Editor::marks`. Pan by dragging the background, zoom with the wheel (or + and -),
//! rubber-band select with Shift; every action also has a key (see `on_key`).
//!
//! Each task reads only its own position and marks, so dragging one box of a 1,000-task graph
//! updates that box and its edges, not the page.

use std::collections::{BTreeSet, HashMap};

use leptos::ev;
use leptos::prelude::*;

use super::state::Editor;
use crate::graph::{Graph, NODE_H, NODE_W, Pt};
use crate::i18n::t;

/// Below this zoom the canvas draws boxes and lines without text.
const FAR_ZOOM: f64 = 0.45;

#[derive(Clone, Debug, PartialEq)]
enum Drag {
    Pan { from: (f64, f64), start: super::state::View },
    Move { last: Pt, moved: bool, pressed: String, additive: bool },
    Connect { from: String, at: Pt },
    Band { a: Pt, b: Pt },
}

/// A node's label fits its box; the whole id is in its tooltip.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

/// The curve of an edge from the right side of one box to the left side of another.
fn edge_path(a: Pt, b: Pt) -> String {
    let (x1, y1) = (a.x + NODE_W, a.y + NODE_H / 2.0);
    let (x2, y2) = (b.x, b.y + NODE_H / 2.0);
    let dx = ((x2 - x1).abs() / 2.0).max(40.0);
    format!("M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}", x1 + dx, x2 - dx)
}

/// The canvas's size on screen, and its top-left corner (browser only; a default elsewhere).
pub fn rect_of(svg: &NodeRef<leptos::svg::Svg>) -> (f64, f64, f64, f64) {
    match svg.get_untracked() {
        Some(el) => {
            let r = el.get_bounding_client_rect();
            (r.left(), r.top(), r.width(), r.height())
        }
        None => (0.0, 0.0, 960.0, 560.0),
    }
}

/// Fits the graph to the canvas once the canvas is on screen (in the browser; the server draws
/// the default view).
pub fn fit_when_shown(ed: Editor, svg: NodeRef<leptos::svg::Svg>) {
    #[cfg(feature = "hydrate")]
    request_animation_frame(move || {
        // The canvas may be gone by the next frame (a diff replaced by the next one when a
        // rollback changes the versions compared): its node ref and editor are disposed with it,
        // and reading them would panic.
        if svg.try_get_untracked().is_none() {
            return;
        }
        let (_, _, w, h) = rect_of(&svg);
        ed.fit(w, h);
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (ed, svg);
}

#[component]
pub fn Canvas(
    ed: Editor,
    svg: NodeRef<leptos::svg::Svg>,
    /// Called with a task id when it is opened (double click, Enter).
    #[prop(optional)]
    on_open: Option<Callback<String>>,
    #[prop(optional, into)] label: Option<String>,
) -> impl IntoView {
    let drag = RwSignal::new(None::<Drag>);
    let before = StoredValue::new(None::<Graph>);
    // Each task's position as a signal of its own: a drag moves the dragged boxes and their
    // edges, nothing else. The document's positions (`ed.pos`) stay the truth: these follow every
    // change of it (undo, arrange, YAML, a load), and a drag writes its result back when it ends.
    let owner = StoredValue::new(Owner::current().expect("the canvas renders inside an owner"));
    let slots = StoredValue::new(HashMap::<String, RwSignal<Pt>>::new());
    let slot = move |id: &str| -> RwSignal<Pt> {
        if let Some(s) = slots.with_value(|m| m.get(id).copied()) {
            return s;
        }
        let at = ed.pos.with_untracked(|p| p.get(id).copied().unwrap_or_default());
        let s = owner.with_value(|o| o.with(|| RwSignal::new(at)));
        slots.update_value(|m| {
            m.insert(id.to_owned(), s);
        });
        s
    };
    Effect::new(move |_| {
        ed.pos.with(|pos| {
            slots.update_value(|m| {
                m.retain(|id, _| pos.contains_key(id));
                for (id, s) in m.iter() {
                    if let Some(p) = pos.get(id)
                        && s.get_untracked() != *p
                    {
                        s.set(*p);
                    }
                }
            });
        });
    });
    // The canvas's place on screen, read once a gesture (reading it forces a layout of the
    // whole drawing, which a pointer move must not pay for).
    let gesture_rect = StoredValue::new(None::<(f64, f64, f64, f64)>);
    let to_graph = move |cx: f64, cy: f64| {
        let (left, top, ..) = gesture_rect.get_value().unwrap_or_else(|| rect_of(&svg));
        let v = ed.view.get_untracked();
        Pt { x: (cx - left - v.x) / v.k, y: (cy - top - v.y) / v.k }
    };
    let capture = move |ev: &ev::PointerEvent| {
        gesture_rect.set_value(Some(rect_of(&svg)));
        if let Some(el) = svg.get_untracked() {
            let _ = el.set_pointer_capture(ev.pointer_id());
            let _ = el.focus();
        }
    };

    let on_background_down = move |ev: ev::PointerEvent| {
        if ev.button() != 0 {
            return;
        }
        capture(&ev);
        let p = to_graph(f64::from(ev.client_x()), f64::from(ev.client_y()));
        if ev.shift_key() && ed.editable.get_untracked() {
            drag.set(Some(Drag::Band { a: p, b: p }));
        } else {
            ed.selection.set(BTreeSet::new());
            ed.selected_edge.set(None);
            drag.set(Some(Drag::Pan {
                from: (f64::from(ev.client_x()), f64::from(ev.client_y())),
                start: ed.view.get_untracked(),
            }));
        }
    };
    let on_move = move |ev: ev::PointerEvent| {
        let Some(d) = drag.get_untracked() else { return };
        let (cx, cy) = (f64::from(ev.client_x()), f64::from(ev.client_y()));
        match d {
            Drag::Pan { from, start } => {
                ed.view.set(super::state::View { x: start.x + cx - from.0, y: start.y + cy - from.1, k: start.k });
            }
            Drag::Move { last, pressed, additive, .. } => {
                let p = to_graph(cx, cy);
                let (dx, dy) = (p.x - last.x, p.y - last.y);
                if dx != 0.0 || dy != 0.0 {
                    for id in ed.selection.get_untracked() {
                        slot(&id).update(|at| {
                            at.x += dx;
                            at.y += dy;
                        });
                    }
                    drag.set(Some(Drag::Move { last: p, moved: true, pressed, additive }));
                }
            }
            Drag::Connect { from, .. } => drag.set(Some(Drag::Connect { from, at: to_graph(cx, cy) })),
            Drag::Band { a, .. } => drag.set(Some(Drag::Band { a, b: to_graph(cx, cy) })),
        }
    };
    let on_up = move |ev: ev::PointerEvent| {
        let Some(d) = drag.get_untracked() else { return };
        drag.set(None);
        let p = to_graph(f64::from(ev.client_x()), f64::from(ev.client_y()));
        gesture_rect.set_value(None);
        match d {
            Drag::Move { moved, pressed, additive, .. } => {
                if moved {
                    let sel = ed.selection.get_untracked();
                    ed.pos.update(|pos| {
                        for id in &sel {
                            if let Some(at) = pos.get_mut(id) {
                                *at = slot(id).get_untracked();
                            }
                        }
                    });
                }
                if let Some(b) = before.try_update_value(Option::take).flatten() {
                    ed.moved(b);
                }
                if !moved && !additive {
                    ed.select_only(&pressed);
                }
            }
            Drag::Connect { from, .. } => {
                let target =
                    ed.pos.with_untracked(|pos| Graph { spec: ed.spec.get_untracked(), pos: pos.clone() }.hit(p));
                if let Some(to) = target {
                    ed.connect(&from, &to);
                }
            }
            Drag::Band { a, b } => {
                let inside =
                    ed.pos.with_untracked(|pos| Graph { spec: ed.spec.get_untracked(), pos: pos.clone() }.within(a, b));
                ed.selection.set(inside);
            }
            Drag::Pan { .. } => {}
        }
    };
    let on_wheel = move |ev: ev::WheelEvent| {
        ev.prevent_default();
        let (left, top, ..) = rect_of(&svg);
        let factor = (-ev.delta_y() * 0.0015).exp();
        ed.zoom_at(factor, f64::from(ev.client_x()) - left, f64::from(ev.client_y()) - top);
    };
    let on_key = move |ev: ev::KeyboardEvent| {
        let key = ev.key();
        let cmd = ev.ctrl_key() || ev.meta_key();
        let (_, _, w, h) = rect_of(&svg);
        let mut handled = true;
        match key.as_str() {
            "+" | "=" => ed.zoom_at(1.2, w / 2.0, h / 2.0),
            "-" | "_" => ed.zoom_at(1.0 / 1.2, w / 2.0, h / 2.0),
            "0" => ed.fit(w, h),
            "Escape" => {
                ed.selection.set(BTreeSet::new());
                ed.selected_edge.set(None);
            }
            "Enter" => {
                if let (Some(open), Some(id)) = (on_open, ed.selection.get_untracked().first().cloned()) {
                    open.run(id);
                }
            }
            _ if !ed.editable.get_untracked() => handled = false,
            "Delete" | "Backspace" => ed.delete_selected(),
            "z" | "Z" if cmd && ev.shift_key() => ed.redo(),
            "z" if cmd => ed.undo(),
            "y" if cmd => ed.redo(),
            "c" if cmd => ed.copy(),
            "v" if cmd => ed.paste(),
            "a" if cmd => ed.select_all(),
            "ArrowLeft" | "ArrowRight" | "ArrowUp" | "ArrowDown" => {
                let step = if ev.shift_key() { 50.0 } else { 10.0 };
                let (dx, dy) = match key.as_str() {
                    "ArrowLeft" => (-step, 0.0),
                    "ArrowRight" => (step, 0.0),
                    "ArrowUp" => (0.0, -step),
                    _ => (0.0, step),
                };
                let sel = ed.selection.get_untracked();
                if sel.is_empty() {
                    ed.view.update(|v| {
                        v.x -= dx;
                        v.y -= dy;
                    });
                } else {
                    ed.edit(|g| g.move_by(&sel, dx, dy));
                }
            }
            _ => handled = false,
        }
        if handled {
            ev.prevent_default();
        }
    };

    // Tasks: (id, kind, description), re-listed only when the document changes.
    let nodes = Memo::new(move |_| {
        ed.spec
            .with(|s| s.tasks.iter().map(|t| (t.id.clone(), t.kind.clone(), t.description.clone())).collect::<Vec<_>>())
    });
    let edges = Memo::new(move |_| Graph { spec: ed.spec.get(), pos: Default::default() }.edges());

    let node_view = move |(id, kind, description): (String, String, String)| {
        let at = {
            let id = id.clone();
            slot(&id)
        };
        let class = {
            let id = id.clone();
            move || {
                let mut c = String::from("node");
                if ed.selection.with(|s| s.contains(&id)) {
                    c.push_str(" selected");
                }
                if let Some(m) = ed.marks.with(|m| m.tasks.get(&id).cloned()) {
                    c.push(' ');
                    c.push_str(&m);
                }
                c
            }
        };
        let down = {
            let id = id.clone();
            move |ev: ev::PointerEvent| {
                if ev.button() != 0 {
                    return;
                }
                ev.stop_propagation();
                capture(&ev);
                let additive = ev.shift_key() || ev.ctrl_key() || ev.meta_key();
                if additive {
                    ed.toggle(&id);
                } else if !ed.selection.with_untracked(|s| s.contains(&id)) {
                    ed.select_only(&id);
                }
                ed.selected_edge.set(None);
                if ed.editable.get_untracked() {
                    before.set_value(Some(ed.graph()));
                }
                let p = to_graph(f64::from(ev.client_x()), f64::from(ev.client_y()));
                drag.set(Some(Drag::Move { last: p, moved: false, pressed: id.clone(), additive }));
                if !ed.editable.get_untracked() {
                    // Read-only: a press selects, nothing moves.
                    drag.set(None);
                    if !additive {
                        ed.select_only(&id);
                    }
                }
            }
        };
        let port_down = {
            let id = id.clone();
            move |ev: ev::PointerEvent| {
                if ev.button() != 0 || !ed.editable.get_untracked() {
                    return;
                }
                ev.stop_propagation();
                capture(&ev);
                let p = to_graph(f64::from(ev.client_x()), f64::from(ev.client_y()));
                drag.set(Some(Drag::Connect { from: id.clone(), at: p }));
            }
        };
        let open = {
            let id = id.clone();
            move |_| {
                if let Some(open) = on_open {
                    open.run(id.clone());
                }
            }
        };
        let focus = {
            let id = id.clone();
            move |_| {
                if !ed.selection.with_untracked(|s| s.contains(&id)) {
                    ed.select_only(&id);
                }
            }
        };
        let title =
            if description.is_empty() { format!("{id} ({kind})") } else { format!("{id} ({kind}): {description}") };
        let aria = title.clone();
        view! {
            <g class=class transform=move || { let p = at.get(); format!("translate({:.1},{:.1})", p.x, p.y) }
                data-task=id.clone() tabindex="0" role="button" aria-label=aria
                on:pointerdown=down on:dblclick=open on:focus=focus>
                <title>{title}</title>
                <rect class="node-box" width=NODE_W height=NODE_H rx="8"></rect>
                <rect class="node-bar" width="6" height=NODE_H rx="3"></rect>
                <text class="node-id" x="16" y="19">{clip(&id, 21)}</text>
                <text class="node-kind" x="16" y="35">{kind.clone()}</text>
                <circle class="port in" cx="0" cy=NODE_H / 2.0 r="5"></circle>
                <circle class="port out" cx=NODE_W cy=NODE_H / 2.0 r="6" data-port="out" on:pointerdown=port_down></circle>
            </g>
        }
    };

    let edge_view = move |(from, to): (String, String)| {
        // Its two ends' signals: moving another task leaves this edge alone.
        let ends = {
            let (from, to) = (from.clone(), to.clone());
            let (a, b) = (slot(&from), slot(&to));
            move || (a.get(), b.get())
        };
        let d = Memo::new(move |_| {
            let (a, b) = ends();
            edge_path(a, b)
        });
        let class = {
            let key = (from.clone(), to.clone());
            move || {
                let mut c = String::from("edge");
                if ed.selected_edge.with(|e| e.as_ref() == Some(&key)) {
                    c.push_str(" selected");
                }
                if ed.marks.with(|m| m.edges.contains(&key)) {
                    c.push_str(" marked");
                }
                c
            }
        };
        let pick = {
            let key = (from.clone(), to.clone());
            move |ev: ev::PointerEvent| {
                ev.stop_propagation();
                ed.selection.set(BTreeSet::new());
                ed.selected_edge.set(Some(key.clone()));
                if let Some(el) = svg.get_untracked() {
                    let _ = el.focus();
                }
            }
        };
        view! {
            <g class=class data-edge=format!("{from}->{to}")>
                <path class="edge-hit" d=d on:pointerdown=pick></path>
                <path class="edge-line" d=d marker-end="url(#arrow)"></path>
            </g>
        }
    };

    let pending = move || {
        match drag.get() {
        Some(Drag::Connect { from, at }) => Some(slot(&from).get()).map(|a| {
            let (x1, y1) = (a.x + NODE_W, a.y + NODE_H / 2.0);
            view! { <path class="edge-line pending" d=format!("M{x1:.1},{y1:.1} L{:.1},{:.1}", at.x, at.y)></path> }.into_any()
        }),
        Some(Drag::Band { a, b }) => Some(
            view! {
                <rect class="band" x=a.x.min(b.x) y=a.y.min(b.y) width=(a.x - b.x).abs() height=(a.y - b.y).abs()></rect>
            }
            .into_any(),
        ),
        _ => None,
    }
    };

    view! {
        <svg class=move || {
                // Zoomed far out, labels are unreadable anyway: leaving them out keeps panning smooth.
                let far = ed.view.with(|v| v.k < FAR_ZOOM);
                match (ed.editable.get(), far) {
                    (true, true) => "canvas editable far",
                    (true, false) => "canvas editable",
                    (false, true) => "canvas far",
                    (false, false) => "canvas",
                }
            } node_ref=svg tabindex="0"
            role="application" aria-label=label.unwrap_or_else(|| "Workflow graph".into()) data-test="canvas"
            on:pointerdown=on_background_down on:pointermove=on_move on:pointerup=on_up on:wheel=on_wheel on:keydown=on_key>
            <defs>
                <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
                    <path d="M 0 0 L 10 5 L 0 10 z" class="arrow"></path>
                </marker>
                <pattern id="dots" width="20" height="20" patternUnits="userSpaceOnUse">
                    <circle cx="1" cy="1" r="1" class="dot"></circle>
                </pattern>
            </defs>
            <rect class="canvas-bg" width="100%" height="100%" fill="url(#dots)"></rect>
            <g class="viewport" transform=move || { let v = ed.view.get(); format!("translate({:.1},{:.1}) scale({:.4})", v.x, v.y, v.k) }>
                <g class="edges">
                    <For each=move || edges.get() key=|e| e.clone() children=edge_view/>
                </g>
                <g class="nodes">
                    <For each=move || nodes.get() key=|n| n.clone() children=node_view/>
                </g>
                {pending}
            </g>
            <Show when=move || nodes.with(Vec::is_empty)>
                <text class="canvas-hint" x="50%" y="50%" text-anchor="middle">
                    {move || if ed.editable.get() { t("Drag a task kind here from the palette")() } else { t("No tasks")() }}
                </text>
            </Show>
        </svg>
    }
    .into_any()
}
