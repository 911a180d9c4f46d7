//! The registry's unit tests.

use std::thread;

use super::*;
use crate::in_process::InProcessPlugin;

fn plugin(name: &str) -> Arc<dyn Plugin> {
    InProcessPlugin::builder(name, "1.0.0")
        .build()
        .expect("valid test plugin")
}

#[test]
fn entering_from_outside_shares_one_chain_and_nested_entries_refuse_reentry() {
    let registry = Registry::default();
    let a = registry.insert(plugin("a")).unwrap();
    let b = registry.insert(plugin("b")).unwrap();
    let outside = CallChain::default();
    let first = a.enter(&outside).unwrap();
    let second = a.enter(&outside).unwrap();
    assert_eq!(first.plugins(), ["a"]);
    // The same allocation each time: an embedder's call copies no name.
    assert!(std::ptr::eq(first.plugins(), second.plugins()));
    assert!(!std::ptr::eq(
        first.plugins(),
        b.enter(&outside).unwrap().plugins()
    ));
    // Nested: a new chain, and re-entry is still refused.
    let nested = b.enter(&first).unwrap();
    assert_eq!(nested.plugins(), ["a", "b"]);
    let err = a.enter(&nested).unwrap_err();
    assert!(
        matches!(err, Error::ReentrantCall { ref plugin, .. } if plugin == "a"),
        "{err}"
    );
}

/// One churner registers `p{k}` and unregisters it again, for k = 0, 1, ...;
/// two readers meanwhile look the plugin being churned up, alternating
/// between its name and its id (by slot and by handle), and check that
/// - every lookup agrees with the key (a name finds the slot with that name
///   and the id seen before, an id finds the slot with that id's name);
/// - the name and the id appear and disappear together: once a probe found
///   the plugin and a later probe missed it, no later probe by either key
///   finds it again (a plugin is registered once);
/// - a completed removal is final: neither key finds the plugin afterwards;
/// - a plugin registered throughout is found by both keys every time.
#[test]
fn lookups_during_churn_see_name_and_id_together_and_never_a_removed_plugin() {
    const ROUNDS: usize = 50_000;
    const READERS: usize = 2;
    let registry = Registry::default();
    let stable = registry.insert(plugin("stable")).unwrap();
    // The k of the plugin being churned.
    let current = AtomicUsize::new(0);
    // The last completed removal.
    let removed: Mutex<Option<(Uuid, String)>> = Mutex::new(None);
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            for k in 0..ROUNDS {
                current.store(k, Ordering::SeqCst);
                let slot = registry.insert(plugin(&format!("p{k}"))).unwrap();
                assert!(registry.remove(slot.id).is_some());
                *removed.lock() = Some((slot.id, slot.name.clone()));
            }
            done.store(true, Ordering::SeqCst);
        });
        for _ in 0..READERS {
            s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    let last = removed.lock().clone();
                    if let Some((id, name)) = last {
                        assert!(registry.get(id).is_none(), "{name} found by id after removal");
                        assert!(registry.plugin(id).is_none(), "{name} handed out by id after removal");
                        assert!(registry.get_by_name(&name).is_none(), "{name} found by name after removal");
                        assert!(registry.plugin_by_name(&name).is_none(), "{name} handed out by name after removal");
                    }
                    let name = format!("p{}", current.load(Ordering::SeqCst));
                    let (mut id, mut gone) = (None::<Uuid>, false);
                    for probe in 0..32 {
                        let found = match (id, probe % 4) {
                            (None, _) | (Some(_), 0) => registry.get_by_name(&name).map(|slot| {
                                assert_eq!(slot.name, name);
                                assert!(id.is_none_or(|id| id == slot.id), "{name} changed id");
                                slot.id
                            }),
                            (Some(id), 1) => registry.get(id).map(|slot| {
                                assert_eq!(slot.name, name);
                                slot.id
                            }),
                            (Some(id), 2) => registry.plugin_by_name(&name).map(|p| {
                                assert_eq!(p.info().name, name);
                                id
                            }),
                            (Some(id), _) => registry.plugin(id).map(|p| {
                                assert_eq!(p.info().name, name);
                                id
                            }),
                        };
                        match found {
                            Some(found) => {
                                assert!(!gone, "{name} (probe {probe}) found again after a probe missed it: its name and id did not disappear together");
                                id = Some(found);
                            }
                            None => gone = id.is_some(),
                        }
                    }
                    let by_id = registry.get(stable.id).expect("stable plugin by id");
                    let by_name = registry.get_by_name("stable").expect("stable plugin by name");
                    assert!(Arc::ptr_eq(&by_id, &by_name));
                    assert_eq!(registry.plugin(stable.id).unwrap().info().name, "stable");
                }
            });
        }
    });
    assert_eq!(registry.snapshot().len(), 1);
}

/// A handle handed out before the plugin was removed keeps working, and
/// handles from different threads are different `Arc`s on the same plugin.
#[test]
fn handles_outlive_removal_and_are_per_thread() {
    let registry = Registry::default();
    let slot = registry.insert(plugin("a")).unwrap();
    let here = registry.plugin(slot.id).unwrap();
    let again = registry.plugin(slot.id).unwrap();
    assert!(Arc::ptr_eq(&here, &again), "one thread reuses its handle");
    let there = thread::scope(|s| {
        s.spawn(|| registry.plugin(slot.id).unwrap())
            .join()
            .unwrap()
    });
    assert!(!Arc::ptr_eq(&here, &there));
    assert!(registry.remove(slot.id).is_some());
    assert!(registry.plugin(slot.id).is_none());
    assert_eq!(here.info().name, "a");
    assert_eq!(there.info().name, "a");
}
