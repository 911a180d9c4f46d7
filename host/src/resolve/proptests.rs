//! Property tests of the resolver over random plugin sets of up to 200 plugins, checked
//! against a simple quadratic reference model.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use proptest::sample::Index;
use uuid::Uuid;

use super::{resolve, Node, Plan};
use crate::{DependencySpec, Error};

const VERSIONS: [&str; 3] = ["1.0.0", "1.5.0", "2.0.0"];

/// One declared dependency before it is turned into a [`DependencySpec`].
#[derive(Debug, Clone)]
struct RawDep {
    target: Index,
    /// 0, 1: a requirement the target's version matches; 2: one it does not; 3: a name
    /// nobody has.
    kind: u8,
    optional: bool,
}

fn raw_plugins() -> impl Strategy<Value = Vec<(usize, Vec<RawDep>)>> {
    let dep = (any::<Index>(), 0u8..4, any::<bool>()).prop_map(|(target, kind, optional)| RawDep {
        target,
        kind,
        optional,
    });
    prop::collection::vec(
        (0..VERSIONS.len(), prop::collection::vec(dep, 0..4)),
        1..=200,
    )
}

/// Builds the nodes; each dependency of plugin `i` targets an index chosen by
/// `pick(i, index)` (or is dropped when it returns `None`).
fn build(raw: &[(usize, Vec<RawDep>)], pick: impl Fn(usize, &Index) -> Option<usize>) -> Vec<Node> {
    let version = |i: usize| VERSIONS[raw[i].0];
    raw.iter()
        .enumerate()
        .map(|(i, (v, deps))| Node {
            id: Uuid::from_u128(i as u128 + 1),
            name: format!("p{i:03}"),
            version: VERSIONS[*v].parse().expect("valid version"),
            source: format!("/plugins/p{i:03}.so"),
            dependencies: deps
                .iter()
                .filter_map(|d| {
                    let t = pick(i, &d.target)?;
                    let major = &version(t)[..1];
                    let (name, requirement) = match d.kind {
                        0 | 1 => (format!("p{t:03}"), format!("^{major}")),
                        2 => (
                            format!("p{t:03}"),
                            if major == "1" { "^2" } else { "^1" }.to_owned(),
                        ),
                        _ => (format!("missing{t}"), "*".to_owned()),
                    };
                    let spec = DependencySpec::required(&name, &requirement).unwrap();
                    Some(DependencySpec {
                        optional: d.optional,
                        ..spec
                    })
                })
                .collect(),
        })
        .collect()
}

/// Reference model: the least set of plugins whose required dependencies are all
/// installed, matching and (recursively) startable. Plugins on or behind a cycle never
/// enter it. Quadratic, which is fine for 200 plugins.
fn expected_startable(nodes: &[Node]) -> HashSet<Uuid> {
    let by_name: HashMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut startable = HashSet::new();
    loop {
        let before = startable.len();
        for node in nodes {
            let ok = node.dependencies.iter().filter(|d| !d.optional).all(|d| {
                by_name.get(d.name.as_str()).is_some_and(|dep| {
                    d.requirement.matches(&dep.version) && startable.contains(&dep.id)
                })
            });
            if ok {
                startable.insert(node.id);
            }
        }
        if startable.len() == before {
            return startable;
        }
    }
}

/// Checks the invariants every plan must satisfy.
fn check_plan(nodes: &[Node], plan: &Plan) -> Result<(), TestCaseError> {
    let by_name: HashMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut wave_of = HashMap::new();
    for (k, wave) in plan.waves.iter().enumerate() {
        for &id in wave {
            prop_assert!(wave_of.insert(id, k).is_none(), "{id} planned twice");
        }
    }

    // Every plugin is either startable or blocked with an explanation, never both.
    for node in nodes {
        let planned = wave_of.contains_key(&node.id);
        let blocked = plan.blocked.contains_key(&node.id);
        prop_assert!(
            planned != blocked,
            "{} planned={planned} blocked={blocked}",
            node.name
        );
        if blocked {
            prop_assert!(plan.explain(node.id).is_some());
        }
    }

    // Every startable plugin whose dependencies are all satisfiable is planned, and only those.
    let expected = expected_startable(nodes);
    let planned: HashSet<Uuid> = wave_of.keys().copied().collect();
    prop_assert_eq!(&planned, &expected);

    // Every resolved dependency is in an earlier wave; every required one is resolved.
    for node in nodes.iter().filter(|n| planned.contains(&n.id)) {
        let deps = &plan.dependencies[&node.id];
        for dep in deps {
            prop_assert!(
                wave_of[dep] < wave_of[&node.id],
                "{} not after its dependency",
                node.name
            );
        }
        for spec in node.dependencies.iter().filter(|d| !d.optional) {
            prop_assert!(deps.contains(&by_name[spec.name.as_str()].id));
        }
    }

    // Shutdown order is the reverse of the waves, and reversing it again gives a valid
    // topological start order.
    let shutdown = plan.shutdown_order();
    let mut reversed = shutdown.clone();
    reversed.reverse();
    prop_assert_eq!(&reversed, &plan.waves);
    let mut position = HashMap::new();
    for (i, id) in shutdown.iter().flatten().enumerate() {
        position.insert(*id, i);
    }
    for (id, deps) in &plan.dependencies {
        for dep in deps {
            prop_assert!(
                position[id] < position[dep],
                "dependent stops after dependency"
            );
        }
    }

    // Every cycle named is a closed walk along required dependencies (a long one is
    // abbreviated with a "(+N more)" step, across which there is no direct link).
    for err in plan.blocked.values() {
        if let Error::DependencyCycle { cycle } = err {
            prop_assert!(cycle.len() >= 2 && cycle.first() == cycle.last());
            prop_assert!(cycle.len() <= super::MAX_CYCLE_NAMES + 2, "{cycle:?}");
            for pair in cycle.windows(2) {
                if pair.iter().any(|name| name.starts_with("(+")) {
                    continue;
                }
                let from = by_name[pair[0].as_str()];
                prop_assert!(
                    from.dependencies
                        .iter()
                        .any(|d| !d.optional && d.name == pair[1]),
                    "{} does not require {}",
                    pair[0],
                    pair[1]
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_dags_plan_every_satisfiable_plugin_in_dependency_order(raw in raw_plugins()) {
        // Dependencies only point at earlier plugins: a DAG.
        let nodes = build(&raw, |i, index| (i > 0).then(|| index.index(i)));
        let plan = resolve(&nodes);
        check_plan(&nodes, &plan)?;
        // In a DAG every usable optional dependency is wired.
        for node in &nodes {
            let Some(deps) = plan.dependencies.get(&node.id) else { continue };
            for spec in node.dependencies.iter().filter(|d| d.optional) {
                let usable = nodes.iter().find(|n| n.name == spec.name).filter(|dep| {
                    spec.requirement.matches(&dep.version) && plan.dependencies.contains_key(&dep.id)
                });
                if let Some(dep) = usable {
                    prop_assert!(deps.contains(&dep.id), "{} misses optional {}", node.name, dep.name);
                }
            }
        }
    }

    #[test]
    fn random_graphs_with_cycles_block_only_what_cannot_start(raw in raw_plugins()) {
        let n = raw.len();
        let nodes = build(&raw, |_, index| Some(index.index(n)));
        let plan = resolve(&nodes);
        check_plan(&nodes, &plan)?;
        let mut shuffled = nodes.clone();
        shuffled.reverse();
        prop_assert_eq!(resolve(&shuffled), plan);
    }
}
