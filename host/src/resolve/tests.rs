//! Unit tests of the resolver: one scenario each, asserting waves, errors and texts.

use uuid::Uuid;

use super::{resolve, Node, Plan};
use crate::{DependencySpec, Error};

fn req(name: &str, requirement: &str) -> DependencySpec {
    DependencySpec::required(name, requirement).unwrap()
}

fn opt(name: &str, requirement: &str) -> DependencySpec {
    DependencySpec::optional(name, requirement).unwrap()
}

fn node(name: &str, version: &str, dependencies: Vec<DependencySpec>) -> Node {
    Node {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        version: version.parse().expect("valid version"),
        dependencies,
        source: format!("/plugins/lib{name}.so"),
    }
}

/// A resolved set of nodes, addressed by name in assertions.
struct Resolved {
    nodes: Vec<Node>,
    plan: Plan,
}

impl Resolved {
    fn new(nodes: Vec<Node>) -> Self {
        let plan = resolve(&nodes);
        Self { nodes, plan }
    }

    fn id(&self, name: &str) -> Uuid {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node named {name}"))
            .id
    }

    fn name(&self, id: Uuid) -> &str {
        &self
            .nodes
            .iter()
            .find(|n| n.id == id)
            .expect("known id")
            .name
    }

    fn names(&self, ids: &[Uuid]) -> Vec<&str> {
        ids.iter().map(|&id| self.name(id)).collect()
    }

    fn waves(&self) -> Vec<Vec<&str>> {
        self.plan.waves.iter().map(|w| self.names(w)).collect()
    }

    fn deps(&self, name: &str) -> Vec<&str> {
        let deps = self.plan.dependencies.get(&self.id(name));
        self.names(deps.unwrap_or_else(|| panic!("{name} is not startable: {:?}", self.plan)))
    }

    fn blocked(&self, name: &str) -> &Error {
        self.plan
            .blocked
            .get(&self.id(name))
            .unwrap_or_else(|| panic!("{name} is not blocked; plan: {:?}", self.waves()))
    }

    fn explain(&self, name: &str) -> String {
        self.plan
            .explain(self.id(name))
            .unwrap_or_else(|| panic!("no explanation for {name}"))
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn chain_starts_dependencies_first_and_stops_dependents_first() {
    let r = Resolved::new(vec![
        node("c", "1.0.0", vec![req("b", "^1")]),
        node("a", "1.0.0", vec![]),
        node("b", "1.0.0", vec![req("a", "^1")]),
    ]);
    assert_eq!(r.waves(), vec![vec!["a"], vec!["b"], vec!["c"]]);
    assert_eq!(r.deps("c"), vec!["b"]);
    assert_eq!(r.deps("a"), Vec::<&str>::new());
    let shutdown: Vec<Vec<&str>> = r.plan.shutdown_order().iter().map(|w| r.names(w)).collect();
    assert_eq!(shutdown, vec![vec!["c"], vec!["b"], vec!["a"]]);
    assert_eq!(
        r.names(&r.plan.transitive_dependencies(r.id("c"))),
        ["a", "b"]
    );
    assert_eq!(r.names(&r.plan.dependents(r.id("a"))), ["b"]);
    assert!(r.plan.blocked.is_empty());
    assert_eq!(r.plan.wave_of(r.id("c")), Some(2));
    assert_eq!(r.plan.explain(r.id("c")), None);
}

#[test]
fn diamond_plans_the_shared_dependency_once_in_an_earlier_wave() {
    let r = Resolved::new(vec![
        node("app", "1.0.0", vec![req("left", "*"), req("right", "*")]),
        node("left", "1.0.0", vec![req("base", "^1")]),
        node("right", "1.0.0", vec![req("base", "^1")]),
        node("base", "1.2.3", vec![]),
    ]);
    assert_eq!(
        r.waves(),
        vec![vec!["base"], vec!["left", "right"], vec!["app"]]
    );
    let base = r.id("base");
    let occurrences = r.plan.waves.iter().flatten().filter(|&&id| id == base);
    assert_eq!(occurrences.count(), 1);
    assert_eq!(r.names(&r.plan.dependents(base)), ["left", "right"]);
    assert_eq!(
        r.names(&r.plan.transitive_dependencies(r.id("app"))),
        ["base", "left", "right"]
    );
}

#[test]
fn cycle_blocks_every_member_with_the_full_cycle_and_spares_the_rest() {
    let r = Resolved::new(vec![
        node("b", "1.0.0", vec![req("c", "*")]),
        node("a", "1.0.0", vec![req("b", "*")]),
        node("c", "1.0.0", vec![req("a", "*")]),
        node("x", "1.0.0", vec![]),
        node("y", "1.0.0", vec![req("x", "*")]),
    ]);
    let cycle = Error::DependencyCycle {
        cycle: strings(&["a", "b", "c", "a"]),
    };
    for member in ["a", "b", "c"] {
        assert_eq!(r.blocked(member), &cycle, "member {member}");
    }
    assert_eq!(r.waves(), vec![vec!["x"], vec!["y"]]);
    assert_eq!(cycle.to_string(), "dependency cycle: a -> b -> c -> a");
    assert_eq!(
        r.explain("b"),
        "b: dependency cycle a -> b -> c -> a (remove one of these dependencies)"
    );
}

#[test]
fn plugin_depending_on_a_cycle_fails_with_dependency_failed() {
    let r = Resolved::new(vec![
        node("a", "1.0.0", vec![req("b", "*")]),
        node("b", "1.0.0", vec![req("a", "*")]),
        node("tail", "1.0.0", vec![req("b", "*")]),
        node("free", "1.0.0", vec![]),
    ]);
    assert_eq!(
        r.blocked("tail"),
        &Error::DependencyFailed {
            plugin: "tail".into(),
            dependency: "b".into()
        }
    );
    assert_eq!(
        r.explain("tail"),
        "tail: dependency `b` failed: b: dependency cycle a -> b -> a \
         (remove one of these dependencies)"
    );
    assert_eq!(r.waves(), vec![vec!["free"]]);
}

#[test]
fn tangled_cycle_names_every_member() {
    // a <-> b <-> c: no single simple cycle goes through all three.
    let r = Resolved::new(vec![
        node("a", "1.0.0", vec![req("b", "*")]),
        node("b", "1.0.0", vec![req("a", "*"), req("c", "*")]),
        node("c", "1.0.0", vec![req("b", "*")]),
    ]);
    let cycle = Error::DependencyCycle {
        cycle: strings(&["a", "b", "c", "b", "a"]),
    };
    for member in ["a", "b", "c"] {
        assert_eq!(r.blocked(member), &cycle, "member {member}");
    }
    assert!(r.plan.waves.is_empty());
}

#[test]
fn self_dependency_is_a_cycle_of_one() {
    let r = Resolved::new(vec![
        node("narcissus", "1.0.0", vec![req("narcissus", "^1")]),
        node("other", "1.0.0", vec![]),
    ]);
    assert_eq!(
        r.blocked("narcissus"),
        &Error::DependencyCycle {
            cycle: strings(&["narcissus", "narcissus"])
        }
    );
    assert_eq!(r.waves(), vec![vec!["other"]]);
}

#[test]
fn missing_dependency_names_plugin_dependency_and_requirement() {
    let r = Resolved::new(vec![
        node("greeter", "1.0.0", vec![req("hello", "^2")]),
        node("other", "1.0.0", vec![]),
    ]);
    let err = r.blocked("greeter");
    assert_eq!(
        err,
        &Error::MissingDependency {
            plugin: "greeter".into(),
            dependency: "hello".into(),
            requirement: "^2".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "plugin `greeter` requires `hello` ^2, which is not installed"
    );
    assert_eq!(
        r.explain("greeter"),
        "greeter: requires hello ^2, which is not installed"
    );
    assert_eq!(r.waves(), vec![vec!["other"]]);
}

#[test]
fn version_conflict_names_requirement_found_version_and_its_file() {
    let r = Resolved::new(vec![
        node("greeter", "1.0.0", vec![req("hello", "^2")]),
        node("hello", "1.0.0", vec![]),
    ]);
    let err = r.blocked("greeter");
    assert_eq!(
        err,
        &Error::VersionConflict {
            plugin: "greeter".into(),
            dependency: "hello".into(),
            requirement: "^2".into(),
            found: "1.0.0".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "plugin `greeter` requires `hello` ^2, found 1.0.0"
    );
    assert_eq!(
        r.explain("greeter"),
        "greeter: requires hello ^2, found 1.0.0 (/plugins/libhello.so)"
    );
    assert_eq!(r.waves(), vec![vec!["hello"]]);
}

#[test]
fn version_matching_follows_semver_pre_release_rules() {
    let r = Resolved::new(vec![
        node("beta", "1.1.0-beta.2", vec![]),
        // A pre-release only matches a requirement that names a pre-release of the same version.
        node("strict", "1.0.0", vec![req("beta", "^1.0")]),
        node("opted-in", "1.0.0", vec![req("beta", "^1.1.0-beta.1")]),
    ]);
    assert_eq!(
        r.blocked("strict"),
        &Error::VersionConflict {
            plugin: "strict".into(),
            dependency: "beta".into(),
            requirement: "^1.0".into(),
            found: "1.1.0-beta.2".into()
        }
    );
    assert_eq!(r.waves(), vec![vec!["beta"], vec!["opted-in"]]);
}

#[test]
fn present_optional_dependency_is_started_first() {
    let r = Resolved::new(vec![
        node(
            "app",
            "1.0.0",
            vec![req("core", "^1"), opt("metrics", "^1")],
        ),
        node("core", "1.0.0", vec![]),
        node("metrics", "1.3.0", vec![req("core", "^1")]),
    ]);
    assert_eq!(r.deps("app"), vec!["core", "metrics"]);
    assert_eq!(r.waves(), vec![vec!["core"], vec!["metrics"], vec!["app"]]);
    assert!(r.plan.skipped_optional.is_empty());
}

#[test]
fn absent_optional_dependency_is_skipped_silently() {
    let r = Resolved::new(vec![node("app", "1.0.0", vec![opt("metrics", "^1")])]);
    assert_eq!(r.deps("app"), Vec::<&str>::new());
    assert_eq!(r.waves(), vec![vec!["app"]]);
    assert!(r.plan.skipped_optional.is_empty());
}

#[test]
fn blocked_optional_dependency_is_skipped_and_the_dependent_starts() {
    let r = Resolved::new(vec![
        node("app", "1.0.0", vec![opt("metrics", "^1"), opt("old", "^2")]),
        node("metrics", "1.0.0", vec![req("absent", "^1")]),
        node("old", "1.0.0", vec![]),
    ]);
    assert_eq!(r.waves(), vec![vec!["app", "old"]]);
    assert_eq!(r.deps("app"), Vec::<&str>::new());
    assert_eq!(
        r.plan.skipped_optional[&r.id("app")],
        vec![
            Error::DependencyFailed {
                plugin: "app".into(),
                dependency: "metrics".into()
            },
            Error::VersionConflict {
                plugin: "app".into(),
                dependency: "old".into(),
                requirement: "^2".into(),
                found: "1.0.0".into()
            }
        ]
    );
}

#[test]
fn cycle_closed_only_by_an_optional_link_does_not_block() {
    // b requires a; a would like b: the optional link is dropped, both start.
    let r = Resolved::new(vec![
        node("a", "1.0.0", vec![opt("b", "*")]),
        node("b", "1.0.0", vec![req("a", "*")]),
        node("self-ish", "1.0.0", vec![opt("self-ish", "*")]),
    ]);
    assert_eq!(r.waves(), vec![vec!["a", "self-ish"], vec!["b"]]);
    assert_eq!(r.deps("a"), Vec::<&str>::new());
    assert_eq!(r.deps("b"), vec!["a"]);
    assert_eq!(
        r.plan.skipped_optional[&r.id("a")],
        vec![Error::DependencyCycle {
            cycle: strings(&["a", "b", "a"])
        }]
    );
    assert_eq!(
        r.plan.skipped_optional[&r.id("self-ish")],
        vec![Error::DependencyCycle {
            cycle: strings(&["self-ish", "self-ish"])
        }]
    );
}

#[test]
fn duplicate_name_highest_version_wins_and_the_loser_names_both_files() {
    let mut old = node("hello", "1.0.0", vec![]);
    old.source = "/plugins/old/libhello.so".into();
    let mut new = node("hello", "2.0.0", vec![]);
    new.source = "/plugins/new/libhello.so".into();
    let (old_id, new_id) = (old.id, new.id);
    let r = Resolved::new(vec![
        old,
        new,
        node("greeter", "1.0.0", vec![req("hello", "^2")]),
    ]);
    let err = &r.plan.blocked[&old_id];
    assert_eq!(
        err.to_string(),
        "plugin name `hello` is claimed twice: by /plugins/new/libhello.so (version 2.0.0, kept) \
         and by /plugins/old/libhello.so (version 1.0.0, refused); remove one of them"
    );
    assert!(!r.plan.blocked.contains_key(&new_id));
    assert_eq!(r.plan.waves, vec![vec![new_id], vec![r.id("greeter")]]);
    assert_eq!(r.plan.dependencies[&r.id("greeter")], vec![new_id]);
}

#[test]
fn duplicate_name_with_equal_versions_refuses_both_and_fails_dependents() {
    let mut a = node("hello", "1.0.0", vec![]);
    a.source = "/a/libhello.so".into();
    let mut b = node("hello", "1.0.0", vec![]);
    b.source = "/b/libhello.so".into();
    let (a_id, b_id) = (a.id, b.id);
    let r = Resolved::new(vec![
        b,
        a,
        node("greeter", "1.0.0", vec![req("hello", "^1")]),
    ]);
    let expected = Error::DuplicateName {
        name: "hello".into(),
        first: "/a/libhello.so (version 1.0.0)".into(),
        second: "/b/libhello.so (version 1.0.0)".into(),
    };
    assert_eq!(r.plan.blocked[&a_id], expected);
    assert_eq!(r.plan.blocked[&b_id], expected);
    assert_eq!(
        r.explain("greeter"),
        "greeter: dependency `hello` failed: hello: name claimed twice, by \
         /a/libhello.so (version 1.0.0) and by /b/libhello.so (version 1.0.0); remove one of them"
    );
    assert!(r.plan.waves.is_empty());
}

#[test]
fn blocking_propagates_transitively_and_explain_gives_the_chain() {
    let r = Resolved::new(vec![
        node("app", "1.0.0", vec![req("db", "^1")]),
        node("db", "1.0.0", vec![req("driver", "^2")]),
        node("driver", "1.4.0", vec![]),
        node("unrelated", "1.0.0", vec![]),
    ]);
    assert_eq!(
        r.blocked("app"),
        &Error::DependencyFailed {
            plugin: "app".into(),
            dependency: "db".into()
        }
    );
    assert_eq!(
        r.explain("app"),
        "app: dependency `db` failed: db: requires driver ^2, found 1.4.0 (/plugins/libdriver.so)"
    );
    assert_eq!(r.waves(), vec![vec!["driver", "unrelated"]]);
}

#[test]
fn own_problem_is_reported_before_a_failed_dependency() {
    let r = Resolved::new(vec![
        node(
            "app",
            "1.0.0",
            vec![req("broken", "*"), req("absent", "^3")],
        ),
        node("broken", "1.0.0", vec![req("nowhere", "*")]),
    ]);
    assert_eq!(
        r.blocked("app"),
        &Error::MissingDependency {
            plugin: "app".into(),
            dependency: "absent".into(),
            requirement: "^3".into()
        }
    );
}

#[test]
fn input_order_does_not_change_the_plan() {
    let nodes = vec![
        node("e", "1.0.0", vec![req("d", "*"), opt("c", "*")]),
        node("d", "1.0.0", vec![req("a", "*")]),
        node("c", "1.0.0", vec![req("b", "*")]),
        node("b", "1.0.0", vec![]),
        node("a", "1.0.0", vec![]),
        node("z", "1.0.0", vec![req("y", "*")]),
    ];
    let forward = resolve(&nodes);
    let mut reversed = nodes.clone();
    reversed.reverse();
    assert_eq!(resolve(&reversed), forward);
    let r = Resolved {
        nodes,
        plan: forward,
    };
    assert_eq!(r.waves(), vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
}

#[test]
fn repeated_id_is_ignored() {
    let first = node("a", "1.0.0", vec![]);
    let mut again = node("b", "1.0.0", vec![]);
    again.id = first.id;
    let plan = resolve(&[first.clone(), again]);
    assert_eq!(plan.waves, vec![vec![first.id]]);
    assert!(plan.blocked.is_empty());
}

#[test]
fn empty_input_gives_an_empty_plan() {
    let plan = resolve(&[]);
    assert!(plan.waves.is_empty() && plan.blocked.is_empty());
    assert!(plan.shutdown_order().is_empty());
}

#[test]
fn huge_cycle_is_abbreviated_but_still_blocks_every_member() {
    let n = 1000;
    let nodes: Vec<Node> = (0..n)
        .map(|i| {
            node(
                &format!("p{i:04}"),
                "1.0.0",
                vec![req(&format!("p{:04}", (i + 1) % n), "*")],
            )
        })
        .collect();
    let r = Resolved::new(nodes);
    let Error::DependencyCycle { cycle } = r.blocked("p0500") else {
        panic!("p0500 should be blocked by the cycle");
    };
    assert_eq!(cycle.len(), super::MAX_CYCLE_NAMES + 2);
    assert_eq!(cycle[..3], strings(&["p0000", "p0001", "p0002"]));
    assert_eq!(cycle[cycle.len() - 2..], strings(&["(+968 more)", "p0000"]));
    assert_eq!(r.plan.blocked.len(), n);
}

mod explain_tree {
    use super::*;
    use crate::resolve::{Cause, ClosestFile};
    use crate::FileStatus;

    fn closest_base(dependency: &str) -> Vec<ClosestFile> {
        (dependency == "base")
            .then(|| ClosestFile {
                path: "/plugins/libbase.so".into(),
                plugin: None,
                version: None,
                status: FileStatus::Quarantined,
                reason: Some("SIGSEGV".into()),
            })
            .into_iter()
            .collect()
    }

    #[test]
    fn a_two_level_chain_ends_at_the_missing_dependency_with_its_closest_file() {
        let r = Resolved::new(vec![
            node("top", "1.0.0", vec![req("mid", "^1")]),
            node("mid", "1.0.0", vec![req("base", "^1")]),
        ]);
        let tree = r.plan.explain_tree(r.id("top"), &closest_base).unwrap();
        assert!(!tree.startable);
        let Cause::DependencyFailed {
            dependency,
            because: Some(mid),
        } = &tree.cause
        else {
            panic!("top should be blocked by mid: {tree:?}");
        };
        assert_eq!((dependency.as_str(), mid.plugin.as_str()), ("mid", "mid"));
        let roots = tree.root_causes();
        assert_eq!(roots.len(), 1);
        let (
            plugin,
            Cause::MissingDependency {
                dependency,
                closest,
                ..
            },
        ) = roots[0]
        else {
            panic!("root cause should be a missing dependency: {roots:?}");
        };
        assert_eq!((plugin, dependency.as_str()), ("mid", "base"));
        assert_eq!(closest[0].status, FileStatus::Quarantined);
    }

    #[test]
    fn conflict_cycle_duplicate_and_startable_are_named() {
        let r = Resolved::new(vec![
            node("hello", "1.0.0", vec![]),
            node("picky", "1.0.0", vec![req("hello", "^2")]),
            node("ping", "1.0.0", vec![req("pong", "^1")]),
            node("pong", "1.0.0", vec![req("ping", "^1")]),
        ]);
        let none = |_: &str| Vec::new();
        let hello = r.plan.explain_tree(r.id("hello"), &none).unwrap();
        assert!(hello.startable && hello.cause == Cause::Startable);
        let picky = r.plan.explain_tree(r.id("picky"), &none).unwrap();
        assert_eq!(
            picky.cause,
            Cause::VersionConflict {
                dependency: "hello".into(),
                requirement: "^2".into(),
                found: "1.0.0".into(),
                found_source: Some("/plugins/libhello.so".into()),
            }
        );
        let ping = r.plan.explain_tree(r.id("ping"), &none).unwrap();
        let Cause::Cycle { path } = &ping.cause else {
            panic!("ping should be in a cycle: {ping:?}");
        };
        assert!(path.contains(&"ping".to_owned()) && path.contains(&"pong".to_owned()));
        assert_eq!(r.plan.explain_tree(Uuid::new_v4(), &none), None);

        let mut twice = node("hello", "1.0.0", vec![]);
        twice.source = "/other/libhello.so".into();
        let d = Resolved::new(vec![node("hello", "1.0.0", vec![]), twice]);
        let blocked = d.plan.blocked.keys().next().copied().unwrap();
        let dup = d.plan.explain_tree(blocked, &none).unwrap();
        assert!(matches!(dup.cause, Cause::DuplicateName { .. }), "{dup:?}");
    }
}
