//! The editor's reactive state: the document and positions as signals, selection, pan and zoom,
//! and every edit going through `Editor::edit` so it is undoable.

use std::collections::{BTreeSet, HashMap, HashSet};

use leptos::prelude::*;
use model::workflow::WorkflowSpec;

use crate::graph::{Clip, ConnectError, Graph, History, NODE_H, NODE_W, Positions, Pt};

/// Pan and zoom: a graph point `p` shows at `p * k + (x, y)` in the canvas.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    pub x: f64,
    pub y: f64,
    pub k: f64,
}

impl Default for View {
    fn default() -> Self {
        View { x: 24.0, y: 24.0, k: 1.0 }
    }
}

pub const MIN_ZOOM: f64 = 0.05;
pub const MAX_ZOOM: f64 = 3.0;

/// Extra classes for tasks and edges (live states, diff colours, validation marks).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Marks {
    pub tasks: HashMap<String, String>,
    pub edges: HashSet<(String, String)>,
}

#[derive(Clone, Copy)]
pub struct Editor {
    pub spec: RwSignal<WorkflowSpec>,
    pub pos: RwSignal<Positions>,
    pub selection: RwSignal<BTreeSet<String>>,
    pub selected_edge: RwSignal<Option<(String, String)>>,
    pub view: RwSignal<View>,
    history: StoredValue<History>,
    pub can_undo: RwSignal<bool>,
    pub can_redo: RwSignal<bool>,
    clipboard: StoredValue<Option<Clip>>,
    /// Something the last gesture could not do, said once (a refused edge).
    pub notice: RwSignal<Option<String>>,
    /// Changed since the last save.
    pub dirty: RwSignal<bool>,
    pub editable: Signal<bool>,
    pub marks: Signal<Marks>,
}

impl Editor {
    pub fn new(graph: Graph, editable: Signal<bool>) -> Editor {
        Editor {
            spec: RwSignal::new(graph.spec),
            pos: RwSignal::new(graph.pos),
            selection: RwSignal::new(BTreeSet::new()),
            selected_edge: RwSignal::new(None),
            view: RwSignal::new(View::default()),
            history: StoredValue::new(History::default()),
            can_undo: RwSignal::new(false),
            can_redo: RwSignal::new(false),
            clipboard: StoredValue::new(None),
            notice: RwSignal::new(None),
            dirty: RwSignal::new(false),
            editable,
            marks: Signal::derive(Marks::default),
        }
    }

    pub fn with_marks(mut self, marks: Signal<Marks>) -> Editor {
        self.marks = marks;
        self
    }

    /// The document and positions as they are now (not tracked).
    pub fn graph(&self) -> Graph {
        Graph { spec: self.spec.get_untracked(), pos: self.pos.get_untracked() }
    }

    fn set_graph(&self, g: Graph) {
        if self.spec.with_untracked(|s| *s != g.spec) {
            self.spec.set(g.spec);
        }
        if self.pos.with_untracked(|p| *p != g.pos) {
            self.pos.set(g.pos);
        }
        let ids: BTreeSet<String> = self.spec.with_untracked(|s| s.tasks.iter().map(|t| t.id.clone()).collect());
        if self.selection.with_untracked(|sel| sel.iter().any(|id| !ids.contains(id))) {
            self.selection.update(|sel| sel.retain(|id| ids.contains(id)));
        }
        self.selected_edge.set(None);
    }

    fn sync_history(&self) {
        self.can_undo.set(self.history.with_value(History::can_undo));
        self.can_redo.set(self.history.with_value(History::can_redo));
    }

    /// Applies an edit, undoably. Returns what the edit returned.
    pub fn edit<R>(&self, f: impl FnOnce(&mut Graph) -> R) -> R {
        let before = self.graph();
        let mut g = before.clone();
        let out = f(&mut g);
        if g != before {
            self.history.update_value(|h| h.record(before));
            self.set_graph(g);
            self.dirty.set(true);
            self.sync_history();
        }
        out
    }

    /// Records a finished move (the positions changed live while dragging).
    pub fn moved(&self, before: Graph) {
        if before.pos != self.pos.get_untracked() {
            self.history.update_value(|h| h.record(before));
            self.dirty.set(true);
            self.sync_history();
        }
    }

    pub fn undo(&self) {
        let current = self.graph();
        if let Some(g) = self.history.try_update_value(|h| h.undo(current)).flatten() {
            self.set_graph(g);
            self.dirty.set(true);
        }
        self.sync_history();
    }

    pub fn redo(&self) {
        let current = self.graph();
        if let Some(g) = self.history.try_update_value(|h| h.redo(current)).flatten() {
            self.set_graph(g);
            self.dirty.set(true);
        }
        self.sync_history();
    }

    /// Shows a document as saved: not undoable, not dirty (after a load, a save or a rollback).
    pub fn load(&self, graph: Graph) {
        self.set_graph(graph);
        self.history.set_value(History::default());
        self.dirty.set(false);
        self.sync_history();
    }

    /// Replaces the document (from the YAML view, or a loaded version): undoable, positions kept
    /// for the tasks still there and found for the new ones.
    pub fn replace_spec(&self, spec: WorkflowSpec) {
        self.edit(|g| {
            let mut pos = std::mem::take(&mut g.pos);
            pos.retain(|id, _| spec.tasks.iter().any(|t| t.id == *id));
            *g = Graph::new(spec, pos);
        });
    }

    pub fn select_only(&self, id: &str) {
        self.selection.set(BTreeSet::from([id.to_owned()]));
        self.selected_edge.set(None);
    }

    pub fn toggle(&self, id: &str) {
        self.selection.update(|s| {
            if !s.remove(id) {
                s.insert(id.to_owned());
            }
        });
    }

    pub fn connect(&self, from: &str, to: &str) {
        let result = self.edit(|g| g.connect(from, to));
        self.notice.set(match result {
            Ok(()) => None,
            Err(ConnectError::Cycle(path)) => Some(format!("cycle:{}", path.join(" → "))),
            Err(ConnectError::Exists) => Some("exists".into()),
            Err(ConnectError::SelfLoop) => Some("self".into()),
            Err(ConnectError::Unknown(id)) => Some(format!("unknown:{id}")),
        });
    }

    pub fn delete_selected(&self) {
        if let Some((from, to)) = self.selected_edge.get_untracked() {
            self.edit(|g| g.disconnect(&from, &to));
            return;
        }
        let sel = self.selection.get_untracked();
        if !sel.is_empty() {
            self.edit(|g| g.delete(&sel));
            self.selection.set(BTreeSet::new());
        }
    }

    pub fn copy(&self) {
        let sel = self.selection.get_untracked();
        if !sel.is_empty() {
            let clip = self.graph().copy(&sel);
            self.clipboard.set_value(Some(clip));
        }
    }

    pub fn paste(&self) {
        let Some(clip) = self.clipboard.get_value() else { return };
        let new = self.edit(|g| g.paste(&clip, Pt { x: 30.0, y: 30.0 }));
        self.selection.set(new.into_iter().collect());
    }

    pub fn select_all(&self) {
        self.selection.set(self.spec.with_untracked(|s| s.tasks.iter().map(|t| t.id.clone()).collect()));
    }

    pub fn arrange(&self, width: f64, height: f64) {
        self.edit(Graph::arrange);
        self.fit(width, height);
    }

    /// Zooms and pans so the whole graph shows in a `width` × `height` canvas.
    pub fn fit(&self, width: f64, height: f64) {
        let Some((lo, hi)) = self.pos.with_untracked(crate::graph::bounds) else {
            self.view.set(View::default());
            return;
        };
        let pad = 32.0;
        let k = ((width - 2.0 * pad) / (hi.x - lo.x)).min((height - 2.0 * pad) / (hi.y - lo.y)).clamp(MIN_ZOOM, 1.0);
        let x = (width - (hi.x - lo.x) * k) / 2.0 - lo.x * k;
        let y = (height - (hi.y - lo.y) * k) / 2.0 - lo.y * k;
        self.view.set(View { x, y, k });
    }

    /// Pans so the task shows in the middle of a `width` × `height` canvas, and selects it.
    pub fn focus(&self, id: &str, width: f64, height: f64) {
        let Some(p) = self.pos.with_untracked(|p| p.get(id).copied()) else { return };
        let k = self.view.get_untracked().k.max(0.6);
        self.view.set(View {
            x: width / 2.0 - (p.x + NODE_W / 2.0) * k,
            y: height / 2.0 - (p.y + NODE_H / 2.0) * k,
            k,
        });
        self.select_only(id);
    }

    /// Zooms by `factor` keeping the canvas point (cx, cy) where it is.
    pub fn zoom_at(&self, factor: f64, cx: f64, cy: f64) {
        self.view.update(|v| {
            let k = (v.k * factor).clamp(MIN_ZOOM, MAX_ZOOM);
            let f = k / v.k;
            v.x = cx - (cx - v.x) * f;
            v.y = cy - (cy - v.y) * f;
            v.k = k;
        });
    }
}
