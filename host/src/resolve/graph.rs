//! Index-based graph algorithms used by the resolver, all linear in nodes + edges:
//! a compact adjacency list, Tarjan's strongly connected components (iterative, so a
//! 10,000-plugin chain cannot overflow the stack), Kahn's topological waves and
//! a readable walk through a cycle.
//!
//! Edges point from a dependent to its dependency. Node indices are positions in the
//! resolver's name-sorted node list, so "smaller index" means "earlier by name".

use std::collections::{HashMap, VecDeque};

/// Sentinel for "not yet visited" in Tarjan's algorithm.
const UNVISITED: usize = usize::MAX;

/// Adjacency list in compressed form: the edges of node `v` are
/// `targets[offsets[v]..offsets[v + 1]]`, each with its `optional` flag.
#[derive(Debug, Clone)]
pub(super) struct Graph {
    offsets: Vec<usize>,
    targets: Vec<usize>,
    optional: Vec<bool>,
}

impl Graph {
    /// Number of nodes.
    pub(super) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The nodes `v` points at, in the order the edges were added.
    pub(super) fn successors(&self, v: usize) -> &[usize] {
        &self.targets[self.offsets[v]..self.offsets[v + 1]]
    }

    /// The edges of `v` as `(target, optional)`.
    pub(super) fn edges(&self, v: usize) -> impl Iterator<Item = (usize, bool)> + '_ {
        let range = self.offsets[v]..self.offsets[v + 1];
        self.targets[range.clone()]
            .iter()
            .copied()
            .zip(self.optional[range].iter().copied())
    }

    /// Whether `v` has an edge to itself.
    pub(super) fn has_self_loop(&self, v: usize) -> bool {
        self.successors(v).contains(&v)
    }

    /// The same nodes with every edge reversed (dependency -> dependents). The edges of
    /// each node come out sorted by source index, i.e. by name.
    pub(super) fn reversed(&self) -> Graph {
        let n = self.len();
        let mut offsets = vec![0usize; n + 1];
        for &t in &self.targets {
            offsets[t + 1] += 1;
        }
        for v in 0..n {
            offsets[v + 1] += offsets[v];
        }
        let mut fill = offsets.clone();
        let mut targets = vec![0usize; self.targets.len()];
        let mut optional = vec![false; self.targets.len()];
        for v in 0..n {
            for (t, opt) in self.edges(v) {
                targets[fill[t]] = v;
                optional[fill[t]] = opt;
                fill[t] += 1;
            }
        }
        Graph {
            offsets,
            targets,
            optional,
        }
    }

    /// A copy without the edges for which `drop(source, target, optional)` is true.
    pub(super) fn without(&self, mut drop: impl FnMut(usize, usize, bool) -> bool) -> Graph {
        let mut builder = GraphBuilder::new(self.len());
        for v in 0..self.len() {
            for (t, opt) in self.edges(v) {
                if !drop(v, t, opt) {
                    builder.add_edge(t, opt);
                }
            }
            builder.finish_node();
        }
        builder.build()
    }
}

/// Builds a [`Graph`] node by node (in index order), ignoring duplicate edges. If an
/// edge is added both as optional and as required, it is required.
pub(super) struct GraphBuilder {
    offsets: Vec<usize>,
    targets: Vec<usize>,
    optional: Vec<bool>,
    /// Per target: 1 + position of its latest edge in `targets` (0 = none yet).
    seen: Vec<usize>,
}

impl GraphBuilder {
    /// A builder for `n` nodes.
    pub(super) fn new(n: usize) -> Self {
        Self {
            offsets: vec![0],
            targets: Vec::new(),
            optional: Vec::new(),
            seen: vec![0; n],
        }
    }

    /// Adds an edge from the current node to `target`.
    pub(super) fn add_edge(&mut self, target: usize, optional: bool) {
        let segment_start = *self.offsets.last().expect("offsets starts with 0");
        let seen = self.seen[target];
        if seen > segment_start {
            // Already an edge of the current node: a required declaration wins.
            self.optional[seen - 1] &= optional;
            return;
        }
        self.targets.push(target);
        self.optional.push(optional);
        self.seen[target] = self.targets.len();
    }

    /// Closes the current node; the next `add_edge` belongs to the next node.
    pub(super) fn finish_node(&mut self) {
        self.offsets.push(self.targets.len());
    }

    /// The finished graph (every node must have been finished).
    pub(super) fn build(self) -> Graph {
        debug_assert_eq!(self.offsets.len(), self.seen.len() + 1);
        Graph {
            offsets: self.offsets,
            targets: self.targets,
            optional: self.optional,
        }
    }
}

/// Strongly connected components, stored flat: component `i` is
/// `members[ends[i - 1]..ends[i]]`, its members sorted by index.
pub(super) struct Components {
    members: Vec<usize>,
    ends: Vec<usize>,
}

impl Components {
    /// The components in the order they were found.
    pub(super) fn iter(&self) -> impl Iterator<Item = &[usize]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.members[start..end])
    }
}

/// Tarjan's strongly connected components. Components come out in reverse topological
/// order: every component is emitted after all components it has edges to, i.e.
/// dependencies before their dependents. Roots are tried in index (name) order.
pub(super) fn strongly_connected_components(graph: &Graph) -> Components {
    let n = graph.len();
    let mut index = vec![UNVISITED; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut calls: Vec<(usize, usize)> = Vec::new();
    let mut next_index = 0usize;
    let mut components = Components {
        members: Vec::with_capacity(n),
        ends: Vec::with_capacity(n),
    };

    for root in 0..n {
        if index[root] != UNVISITED {
            continue;
        }
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));

        while let Some(frame) = calls.last_mut() {
            let (v, pos) = *frame;
            let successors = graph.successors(v);
            if pos < successors.len() {
                frame.1 += 1;
                let w = successors[pos];
                if index[w] == UNVISITED {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let start = components.members.len();
                loop {
                    let w = stack.pop().expect("v is on the stack");
                    on_stack[w] = false;
                    components.members.push(w);
                    if w == v {
                        break;
                    }
                }
                components.members[start..].sort_unstable();
                components.ends.push(components.members.len());
            }
        }
    }
    components
}

/// Whether a component is a cycle (more than one member, or one member depending on itself).
pub(super) fn is_cycle(graph: &Graph, component: &[usize]) -> bool {
    component.len() > 1 || graph.has_self_loop(component[0])
}

/// A walk through a strongly connected component.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CycleWalk {
    /// The members in walk order, starting at the smallest index; when complete, it ends
    /// with that first member again (`[a, b, c, a]`).
    pub(super) steps: Vec<usize>,
    /// Members not named because the walk reached its length limit (then `steps` does
    /// not end with the first member).
    pub(super) omitted: usize,
}

/// A closed walk through every member of a strongly connected component, starting and
/// ending at its smallest index, naming at most about `limit` steps.
///
/// For a simple cycle (the usual case) this is the cycle itself and costs O(members).
/// For a tangled component (members with several successors inside it) it greedily walks
/// to the nearest member not yet named, which can name some members twice; each step is
/// a breadth-first search inside the component, and there are at most `limit` of them.
/// Past `limit` steps the walk stops and counts the members it did not name, so a huge
/// cycle costs neither quadratic time nor quadratic memory in the errors that copy it.
pub(super) fn cycle_walk(graph: &Graph, component: &[usize], limit: usize) -> CycleWalk {
    let start = component[0];
    let local: HashMap<usize, usize> = component.iter().enumerate().map(|(i, &v)| (v, i)).collect();
    let inside = |v: usize| {
        graph
            .successors(v)
            .iter()
            .copied()
            .filter(|t| local.contains_key(t))
    };

    // Simple cycle: every member has exactly one successor inside the component.
    if component.iter().all(|&v| inside(v).count() == 1) {
        let next = |v: usize| inside(v).next().expect("one successor inside");
        let mut steps = vec![start];
        let mut v = next(start);
        while v != start && steps.len() < limit {
            steps.push(v);
            v = next(v);
        }
        let omitted = component.len() - (steps.len());
        if omitted == 0 {
            steps.push(start);
        }
        return CycleWalk { steps, omitted };
    }

    let mut named = vec![false; component.len()];
    let mut remaining = component.len() - 1;
    named[0] = true;
    let mut steps = vec![start];
    let mut current = start;
    while remaining > 0 {
        if steps.len() >= limit {
            return CycleWalk {
                steps,
                omitted: remaining,
            };
        }
        let path = shortest_path(current, |v| !named[local[&v]], &inside);
        for &v in &path {
            if !named[local[&v]] {
                named[local[&v]] = true;
                remaining -= 1;
            }
        }
        current = *path
            .last()
            .expect("a strongly connected component reaches every member");
        steps.extend(path);
    }
    steps.extend(shortest_path(current, |v| v == start, &inside));
    CycleWalk { steps, omitted: 0 }
}

/// Breadth-first search from `from` to the nearest other node accepted by `goal`; the
/// path excludes `from` and includes the goal. Empty if no such node is reachable.
fn shortest_path<I: Iterator<Item = usize>>(
    from: usize,
    goal: impl Fn(usize) -> bool,
    successors: &impl Fn(usize) -> I,
) -> Vec<usize> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(v) = queue.pop_front() {
        for w in successors(v) {
            if w == from || parent.contains_key(&w) {
                continue;
            }
            parent.insert(w, v);
            if goal(w) {
                let mut path = vec![w];
                let mut at = w;
                while let Some(&p) = parent.get(&at) {
                    if p == from {
                        break;
                    }
                    path.push(p);
                    at = p;
                }
                path.reverse();
                return path;
            }
            queue.push_back(w);
        }
    }
    Vec::new()
}

/// Kahn's algorithm in waves over the nodes with `included[v]`: wave 0 holds the nodes
/// without edges, wave k the nodes whose every successor is in a wave < k. Each wave is
/// sorted by index (name). Nodes on or behind a cycle are left out; the caller compares
/// the count. `dependents` must be `graph.reversed()`.
pub(super) fn waves(graph: &Graph, dependents: &Graph, included: &[bool]) -> Vec<Vec<usize>> {
    let mut pending: Vec<usize> = (0..graph.len())
        .map(|v| graph.successors(v).len())
        .collect();
    let mut current: Vec<usize> = (0..graph.len())
        .filter(|&v| included[v] && pending[v] == 0)
        .collect();
    let mut waves = Vec::new();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &v in &current {
            for &d in dependents.successors(v) {
                pending[d] -= 1;
                if pending[d] == 0 && included[d] {
                    next.push(d);
                }
            }
        }
        next.sort_unstable();
        waves.push(std::mem::replace(&mut current, next));
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[&[usize]]) -> Graph {
        let mut b = GraphBuilder::new(edges.len());
        for targets in edges {
            for &t in *targets {
                b.add_edge(t, false);
            }
            b.finish_node();
        }
        b.build()
    }

    #[test]
    fn components_come_out_dependencies_first() {
        // 0 -> 1 -> 2 -> 1, 3 alone
        let g = graph(&[&[1], &[2], &[1], &[]]);
        let comps = strongly_connected_components(&g);
        let comps: Vec<&[usize]> = comps.iter().collect();
        assert_eq!(comps, vec![&[1, 2][..], &[0], &[3]]);
        assert!(is_cycle(&g, comps[0]));
        assert!(!is_cycle(&g, comps[1]));
    }

    #[test]
    fn tangled_component_walk_names_every_member() {
        // 0 <-> 1 <-> 2: no simple cycle through all three
        let g = graph(&[&[1], &[0, 2], &[1]]);
        let comps = strongly_connected_components(&g);
        let comps: Vec<&[usize]> = comps.iter().collect();
        assert_eq!(comps, vec![&[0, 1, 2][..]]);
        let walk = cycle_walk(&g, comps[0], 10);
        assert_eq!(walk.steps, vec![0, 1, 2, 1, 0]);
        assert_eq!(walk.omitted, 0);
        let short = cycle_walk(&g, comps[0], 2);
        assert_eq!((short.steps, short.omitted), (vec![0, 1], 1));
    }

    #[test]
    fn long_simple_cycle_walk_stops_at_the_limit() {
        // 0 -> 1 -> ... -> 9 -> 0
        let edges: Vec<Vec<usize>> = (0..10).map(|v| vec![(v + 1) % 10]).collect();
        let refs: Vec<&[usize]> = edges.iter().map(Vec::as_slice).collect();
        let g = graph(&refs);
        let all: Vec<usize> = (0..10).collect();
        let full = cycle_walk(&g, &all, 10);
        assert_eq!(full.steps, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]);
        let cut = cycle_walk(&g, &all, 4);
        assert_eq!((cut.steps, cut.omitted), (vec![0, 1, 2, 3], 6));
    }

    #[test]
    fn duplicate_edges_are_merged_and_required_wins() {
        let mut b = GraphBuilder::new(2);
        b.finish_node();
        b.add_edge(0, true);
        b.add_edge(0, false);
        b.add_edge(0, true);
        b.finish_node();
        let g = b.build();
        assert_eq!(g.edges(1).collect::<Vec<_>>(), vec![(0, false)]);
    }
}
