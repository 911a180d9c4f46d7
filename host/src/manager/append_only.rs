//! An append-only list that readers walk without a lock: what a slot keeps of
//! every plugin object and library image it ever had ([`super::plugin_cell`]).
//!
//! A node, once pushed, is neither moved nor freed until the list is dropped, so
//! a `&Node` borrowed from the list stays valid for as long as the list. A push
//! publishes its node with one compare-and-swap on the link that was null (the
//! first-node link or the last node's `next`); a reader follows the links with
//! acquire loads, so it sees every node fully written. Concurrent pushes are
//! safe (the loser of a race moves on to the winner's `next`), though the slot
//! only ever pushes under its lifecycle lock.
//!
//! Sized for the common case: an empty list is one pointer, a list of one
//! value one allocation of the value plus two words. (The general-purpose
//! `boxcar` vector this replaced costs ~0.5 KB inline and a 32-entry first
//! bucket per list; with two lists per plugin that was ~3 KB per registered
//! plugin, which made 10,000 plugins outgrow the CPU caches.) Finding a node by
//! index walks the list: lists here hold one node per reload of one plugin.
//!
//! The `loom_model` tests at the end of this file run pushes and walks under
//! every interleaving loom can produce (`cargo xtask loom`).

use std::marker::PhantomData;
use std::ptr;

#[cfg(plugbay_loom)]
use loom::sync::atomic::{AtomicPtr, Ordering};
#[cfg(not(plugbay_loom))]
use std::sync::atomic::{AtomicPtr, Ordering};

/// One value of an [`AppendOnly`] list, with its position.
pub(crate) struct Node<T> {
    value: T,
    /// Position in the list, from 0 (written before the node is published).
    index: usize,
    /// The next node, or null: written once, by the push that publishes it.
    next: AtomicPtr<Node<T>>,
}

impl<T> Node<T> {
    /// The value.
    pub(crate) fn value(&self) -> &T {
        &self.value
    }

    /// Its position in the list, from 0.
    pub(crate) fn index(&self) -> usize {
        self.index
    }
}

/// An append-only, lock-free list (see the module documentation).
pub(crate) struct AppendOnly<T> {
    /// The first node, or null while empty.
    first: AtomicPtr<Node<T>>,
    /// The list owns its `T`s (auto traits come from the explicit impls below).
    _owns: PhantomData<*mut T>,
}

// SAFETY: the list owns its values (dropped with it, possibly on another
// thread): sending it sends them, which needs `T: Send`.
unsafe impl<T: Send> Send for AppendOnly<T> {}
// SAFETY: through `&AppendOnly` a thread reads values (`T: Sync`) and moves new
// values in that another thread may drop later (`T: Send`); the links
// themselves are atomics.
unsafe impl<T: Send + Sync> Sync for AppendOnly<T> {}

impl<T> Default for AppendOnly<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> AppendOnly<T> {
    /// An empty list.
    pub(crate) fn new() -> Self {
        Self {
            first: AtomicPtr::new(ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// Appends `value` at the end; returns its node.
    pub(crate) fn push(&self, value: T) -> &Node<T> {
        let node = Box::into_raw(Box::new(Node {
            value,
            index: 0,
            next: AtomicPtr::new(ptr::null_mut()),
        }));
        let mut link = &self.first;
        let mut index = 0;
        loop {
            // SAFETY: `node` is not published yet: this thread is its only user.
            unsafe { (*node).index = index };
            match link.compare_exchange(ptr::null_mut(), node, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: published nodes live as long as the list (freed only by
                // `drop`, which has `&mut self`), and `&self` borrows the list.
                Ok(_) => return unsafe { &*node },
                Err(taken) => {
                    // SAFETY: as above; the acquire load saw the node fully written.
                    let taken = unsafe { &*taken };
                    link = &taken.next;
                    index = taken.index + 1;
                }
            }
        }
    }

    /// The nodes, first to last (nodes pushed meanwhile may or may not appear).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Node<T>> {
        let mut next = self.first.load(Ordering::Acquire);
        std::iter::from_fn(move || {
            // SAFETY: a non-null link points at a published node, which lives as
            // long as the list this iterator borrows; the acquire load saw it
            // fully written.
            let node = unsafe { next.as_ref() }?;
            next = node.next.load(Ordering::Acquire);
            Some(node)
        })
    }

    /// The node at position `index`, if the list has one.
    pub(crate) fn get(&self, index: usize) -> Option<&Node<T>> {
        self.iter().nth(index)
    }

    /// How many values the list holds now.
    pub(crate) fn len(&self) -> usize {
        self.iter().count()
    }
}

impl<T> Drop for AppendOnly<T> {
    fn drop(&mut self) {
        let mut next = self.first.load(Ordering::Acquire);
        while !next.is_null() {
            // SAFETY: `&mut self`: nobody else can reach the nodes any more; each
            // came from `Box::into_raw` in `push` and is freed exactly once here.
            let node = unsafe { Box::from_raw(next) };
            next = node.next.load(Ordering::Acquire);
        }
    }
}

#[cfg(all(test, not(plugbay_loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn push_iter_get_len() {
        let list = AppendOnly::new();
        assert_eq!(list.len(), 0);
        assert!(list.get(0).is_none());
        let a = list.push("a".to_owned());
        assert_eq!((a.index(), a.value().as_str()), (0, "a"));
        let b = list.push("b".to_owned());
        assert_eq!((b.index(), b.value().as_str()), (1, "b"));
        // Earlier borrows stay valid across pushes.
        assert_eq!(a.value(), "a");
        let all: Vec<(usize, &str)> = list
            .iter()
            .map(|n| (n.index(), n.value().as_str()))
            .collect();
        assert_eq!(all, [(0, "a"), (1, "b")]);
        assert_eq!(list.get(1).map(|n| n.value().as_str()), Some("b"));
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn concurrent_pushes_keep_every_value_once_with_distinct_positions() {
        let list = Arc::new(AppendOnly::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let list = Arc::clone(&list);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        list.push(t * 1000 + i);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("pusher");
        }
        let nodes: Vec<(usize, i32)> = list.iter().map(|n| (n.index(), *n.value())).collect();
        assert_eq!(nodes.len(), 2000);
        assert!(nodes.iter().enumerate().all(|(i, (index, _))| i == *index));
        let mut values: Vec<i32> = nodes.iter().map(|(_, v)| *v).collect();
        values.sort_unstable();
        let expected: Vec<i32> = (0..4)
            .flat_map(|t| (0..500).map(move |i| t * 1000 + i))
            .collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn dropping_the_list_drops_every_value() {
        let marker = Arc::new(());
        {
            let list = AppendOnly::new();
            for _ in 0..3 {
                list.push(Arc::clone(&marker));
            }
            assert_eq!(Arc::strong_count(&marker), 4);
        }
        assert_eq!(Arc::strong_count(&marker), 1);
    }
}

#[cfg(all(test, plugbay_loom))]
mod loom_model {
    use loom::sync::Arc;
    use loom::thread;

    use super::*;

    /// Two pushers race a reader: every value ends in the list exactly once, at
    /// positions 0, 1, 2 in list order, and the reader (walking meanwhile) sees a
    /// prefix of the final list with every node fully written.
    #[test]
    fn pushes_race_a_walk() {
        loom::model(|| {
            let list = Arc::new(AppendOnly::new());
            list.push(0_usize);
            let pushers: Vec<_> = [1_usize, 2]
                .into_iter()
                .map(|v| {
                    let list = Arc::clone(&list);
                    thread::spawn(move || list.push(v).value() == &v)
                })
                .collect();
            let seen: Vec<(usize, usize)> = list.iter().map(|n| (n.index(), *n.value())).collect();
            for p in pushers {
                assert!(p.join().expect("pusher"), "push returned another node");
            }
            let all: Vec<(usize, usize)> = list.iter().map(|n| (n.index(), *n.value())).collect();
            assert_eq!(all.len(), 3);
            assert!(all.iter().enumerate().all(|(i, (index, _))| i == *index));
            let mut values: Vec<usize> = all.iter().map(|(_, v)| *v).collect();
            values.sort_unstable();
            assert_eq!(values, [0, 1, 2]);
            assert_eq!(seen[..], all[..seen.len()], "the walk saw something else");
        });
    }
}
