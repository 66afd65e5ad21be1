//! Layered layout of a task graph, flowing left to right: the editor's "Arrange", and the place of
//! every task a document gives no position for.
//!
//! A Sugiyama-style layout kept small: edges that close a cycle are set aside (an invalid document
//! still gets drawn, its cycle highlighted), each task goes to the layer after its deepest upstream
//! task, long edges get a waypoint in every layer they cross so they take part in ordering, the order
//! within layers is improved by barycentre sweeps, and each layer is centred on the tallest.
//! Everything is linear or `n log n` per sweep: a 1,000-task graph lays out in milliseconds.

use super::{NODE_H, NODE_W, Pt};

const GAP_X: f64 = 90.0;
const GAP_Y: f64 = 26.0;
const SWEEPS: usize = 8;

/// Top-left positions for nodes `0..n`, given each node's upstream nodes.
pub fn layered(upstream: &[Vec<usize>]) -> Vec<Pt> {
    let n = upstream.len();
    if n == 0 {
        return Vec::new();
    }
    let ups = acyclic(upstream);
    let layer = layers(&ups);

    // Real nodes 0..n, then one waypoint per crossed layer of each long edge. `preds`/`succs` are
    // the edges between adjacent layers.
    let mut node_layer = layer.clone();
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (v, us) in ups.iter().enumerate() {
        for &u in us {
            let mut prev = u;
            for l in layer[u] + 1..layer[v] {
                let w = node_layer.len();
                node_layer.push(l);
                preds.push(vec![prev]);
                succs.push(Vec::new());
                succs[prev].push(w);
                prev = w;
            }
            preds[v].push(prev);
            succs[prev].push(v);
        }
    }
    let depth = node_layer.iter().copied().max().unwrap_or(0) + 1;
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (v, &l) in node_layer.iter().enumerate() {
        rows[l].push(v);
    }
    let mut at = vec![0.0f64; node_layer.len()];
    let place = |rows: &Vec<Vec<usize>>, at: &mut Vec<f64>| {
        for row in rows {
            for (i, &v) in row.iter().enumerate() {
                at[v] = i as f64;
            }
        }
    };
    place(&rows, &mut at);
    for sweep in 0..SWEEPS {
        let down = sweep % 2 == 0;
        let order: Vec<usize> = if down { (1..depth).collect() } else { (0..depth.saturating_sub(1)).rev().collect() };
        for l in order {
            let row = &mut rows[l];
            let key = |v: usize| {
                let nb = if down { &preds[v] } else { &succs[v] };
                if nb.is_empty() { at[v] } else { nb.iter().map(|&u| at[u]).sum::<f64>() / nb.len() as f64 }
            };
            let mut keyed: Vec<(f64, usize)> = row.iter().map(|&v| (key(v), v)).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(at[a.1].total_cmp(&at[b.1])));
            *row = keyed.into_iter().map(|(_, v)| v).collect();
            for (i, &v) in row.iter().enumerate() {
                at[v] = i as f64;
            }
        }
    }

    // Waypoints take less room than tasks.
    let height = |row: &[usize]| row.iter().map(|&v| if v < n { NODE_H + GAP_Y } else { GAP_Y }).sum::<f64>();
    let tallest = rows.iter().map(|r| height(r)).fold(0.0, f64::max);
    let mut out = vec![Pt::default(); n];
    for (l, row) in rows.iter().enumerate() {
        let mut y = (tallest - height(row)) / 2.0;
        for &v in row {
            if v < n {
                out[v] = Pt { x: l as f64 * (NODE_W + GAP_X), y };
                y += NODE_H + GAP_Y;
            } else {
                y += GAP_Y;
            }
        }
    }
    out
}

/// The upstream lists without the edges that close a cycle (depth-first, back edges dropped).
fn acyclic(upstream: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let n = upstream.len();
    let mut mark = vec![Mark::New; n];
    let mut keep: Vec<Vec<usize>> = vec![Vec::new(); n];
    for root in 0..n {
        if mark[root] != Mark::New {
            continue;
        }
        // Iterative DFS over upstream edges: (node, next edge to look at).
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::Open;
        while let Some(&mut (v, ref mut i)) = stack.last_mut() {
            if let Some(&u) = upstream[v].get(*i) {
                *i += 1;
                if u >= n {
                    continue;
                }
                match mark[u] {
                    Mark::Open => {} // closes a cycle: set aside
                    Mark::Done => keep[v].push(u),
                    Mark::New => {
                        keep[v].push(u);
                        mark[u] = Mark::Open;
                        stack.push((u, 0));
                    }
                }
            } else {
                mark[v] = Mark::Done;
                stack.pop();
            }
        }
    }
    for k in &mut keep {
        k.sort_unstable();
        k.dedup();
    }
    keep
}

/// Each node's layer: one after its deepest upstream node (roots are layer 0).
fn layers(ups: &[Vec<usize>]) -> Vec<usize> {
    let n = ups.len();
    let mut downs: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indegree = vec![0usize; n];
    for (v, us) in ups.iter().enumerate() {
        for &u in us {
            downs[u].push(v);
            indegree[v] += 1;
        }
    }
    let mut layer = vec![0usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
    while let Some(u) = ready.pop() {
        for &v in &downs[u] {
            layer[v] = layer[v].max(layer[u] + 1);
            indegree[v] -= 1;
            if indegree[v] == 0 {
                ready.push(v);
            }
        }
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: Pt, b: Pt) -> bool {
        (a.x - b.x).abs() < NODE_W && (a.y - b.y).abs() < NODE_H
    }

    #[test]
    fn a_chain_goes_left_to_right_and_nothing_overlaps() {
        let pos = layered(&[vec![], vec![0], vec![1], vec![0, 2]]);
        assert!(pos[0].x < pos[1].x && pos[1].x < pos[2].x && pos[2].x < pos[3].x, "{pos:?}");
        for i in 0..pos.len() {
            for j in i + 1..pos.len() {
                assert!(!overlaps(pos[i], pos[j]), "{i} and {j} overlap: {pos:?}");
            }
        }
    }

    #[test]
    fn every_task_sits_right_of_its_upstream_tasks() {
        // A diamond with a long edge and a second root.
        let ups = vec![vec![], vec![0], vec![0], vec![1, 2], vec![], vec![4, 0], vec![3, 5, 0]];
        let pos = layered(&ups);
        for (v, us) in ups.iter().enumerate() {
            for &u in us {
                assert!(pos[u].x < pos[v].x, "{u} → {v}: {pos:?}");
            }
        }
    }

    #[test]
    fn ordering_untangles_a_crossing() {
        // a→c, b→d listed so that the first guess crosses: roots [a, b], layer 1 [d, c].
        let ups = vec![vec![], vec![], vec![1], vec![0]];
        let pos = layered(&ups);
        assert!((pos[0].y < pos[1].y) == (pos[3].y < pos[2].y), "edges must not cross: {pos:?}");
    }

    #[test]
    fn a_cycle_is_still_laid_out() {
        let pos = layered(&[vec![2], vec![0], vec![1], vec![2]]);
        assert_eq!(pos.len(), 4);
        for i in 0..pos.len() {
            for j in i + 1..pos.len() {
                assert!(!overlaps(pos[i], pos[j]), "{i} and {j} overlap: {pos:?}");
            }
        }
    }

    #[test]
    fn a_thousand_tasks_lay_out() {
        // A wide, deep graph: 50 layers of 20, each task depending on two of the previous layer.
        let mut ups = Vec::new();
        for l in 0..50 {
            for i in 0..20 {
                ups.push(if l == 0 { vec![] } else { vec![(l - 1) * 20 + i, (l - 1) * 20 + (i * 7) % 20] });
            }
        }
        let pos = layered(&ups);
        assert_eq!(pos.len(), 1000);
        let mut seen: Vec<(i64, i64)> = pos.iter().map(|p| (p.x as i64, p.y as i64)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 1000, "no two tasks share a place");
    }
}
