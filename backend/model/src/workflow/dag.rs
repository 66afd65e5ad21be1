//! The task graph: indices, edges, a topological order, and cycle reporting.

use std::collections::HashMap;

/// A task's position in `Workflow::tasks`.
pub type TaskIdx = usize;

/// Edges by index. Built only from an acyclic graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dag {
    pub upstream: Vec<Vec<TaskIdx>>,
    pub downstream: Vec<Vec<TaskIdx>>,
    /// Every task after all of its upstream tasks.
    pub topo: Vec<TaskIdx>,
}

impl Dag {
    /// Builds the graph from each task's upstream list, or returns one cycle as a path
    /// `[a, b, c, a]` of indices.
    pub fn build(upstream: Vec<Vec<TaskIdx>>) -> Result<Dag, Vec<TaskIdx>> {
        let n = upstream.len();
        let mut downstream = vec![Vec::new(); n];
        let mut indegree = vec![0usize; n];
        for (task, ups) in upstream.iter().enumerate() {
            for &u in ups {
                downstream[u].push(task);
                indegree[task] += 1;
            }
        }
        // Kahn's algorithm, lowest index first so the order is stable for a given document.
        let mut ready: std::collections::BTreeSet<TaskIdx> = (0..n).filter(|&t| indegree[t] == 0).collect();
        let mut topo = Vec::with_capacity(n);
        while let Some(t) = ready.pop_first() {
            topo.push(t);
            for &d in &downstream[t] {
                indegree[d] -= 1;
                if indegree[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        if topo.len() < n {
            return Err(find_cycle(&upstream, &indegree));
        }
        Ok(Dag { upstream, downstream, topo })
    }

    /// `task` and everything downstream of it, in topological order.
    pub fn with_downstream(&self, task: TaskIdx) -> Vec<TaskIdx> {
        let mut seen = vec![false; self.topo.len()];
        let mut stack = vec![task];
        while let Some(t) = stack.pop() {
            if !std::mem::replace(&mut seen[t], true) {
                stack.extend(&self.downstream[t]);
            }
        }
        self.topo.iter().copied().filter(|&t| seen[t]).collect()
    }
}

/// A cycle among the tasks Kahn's algorithm could not order (those with indegree left).
fn find_cycle(upstream: &[Vec<TaskIdx>], indegree: &[usize]) -> Vec<TaskIdx> {
    let stuck: Vec<TaskIdx> = (0..upstream.len()).filter(|&t| indegree[t] > 0).collect();
    // Walk upstream edges inside the stuck set until a task repeats: that closes a cycle.
    let in_stuck: HashMap<TaskIdx, ()> = stuck.iter().map(|&t| (t, ())).collect();
    let mut path = vec![stuck[0]];
    let mut pos: HashMap<TaskIdx, usize> = HashMap::from([(stuck[0], 0)]);
    loop {
        let cur = *path.last().expect("path is never empty");
        let next = upstream[cur]
            .iter()
            .copied()
            .find(|u| in_stuck.contains_key(u))
            .expect("a stuck task has a stuck upstream");
        if let Some(&start) = pos.get(&next) {
            // path[start..] walks upstream; reverse it to read in dependency order.
            let mut cycle: Vec<TaskIdx> = path[start..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return cycle;
        }
        pos.insert(next, path.len());
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_a_diamond() {
        // 0 → 1, 0 → 2, 1,2 → 3
        let dag = Dag::build(vec![vec![], vec![0], vec![0], vec![1, 2]]).unwrap();
        assert_eq!(dag.topo, vec![0, 1, 2, 3]);
        assert_eq!(dag.downstream[0], vec![1, 2]);
        assert_eq!(dag.with_downstream(1), vec![1, 3]);
    }

    #[test]
    fn reports_a_cycle_as_a_closed_path() {
        // 0 → 1 → 2 → 0, and 3 hangs off 2
        let cycle = Dag::build(vec![vec![2], vec![0], vec![1], vec![2]]).unwrap_err();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
        for w in cycle.windows(2) {
            assert!([(0, 1), (1, 2), (2, 0)].contains(&(w[0], w[1])), "{cycle:?} follows the edges");
        }
        assert_eq!(Dag::build(vec![vec![0]]).unwrap_err(), vec![0, 0], "a self-dependency is a cycle");
    }
}
