//! Which waiting delivery a worker process starts next: tenants take turns, each starting as many
//! jobs in its turn as its weight, and none holds more than its share of the process's slots, so
//! one tenant's backlog of long jobs leaves room for another's.
//!
//! The broker hands out a queue's messages in its own order, one tenant's after another's; the
//! pool receives ahead of its free slots (up to as many again per lane) and starts from what it
//! holds in this order instead. A tenant's deliveries keep their order among themselves.

use std::collections::{HashMap, VecDeque};

/// Deliveries received and not started yet, by tenant, and the attempts running, by tenant.
pub(crate) struct FairQueue<T> {
    waiting: HashMap<String, VecDeque<T>>,
    /// Tenants with deliveries waiting, in the order they take their turns.
    turns: VecDeque<String>,
    /// Deliveries the tenant first in turn has started in this turn.
    started_in_turn: u32,
    /// Starts per turn of the tenants named; the rest have one.
    weights: HashMap<String, u32>,
    running: HashMap<String, usize>,
    running_total: usize,
    slots: usize,
    share: usize,
}

impl<T> FairQueue<T> {
    /// `slots` attempts at once, at most `share` of them (at least one) for one tenant; tenants
    /// start as many in a turn as `weights` says (one for those it does not name).
    pub(crate) fn new(slots: usize, share: usize, weights: HashMap<String, u32>) -> FairQueue<T> {
        FairQueue {
            waiting: HashMap::new(),
            turns: VecDeque::new(),
            started_in_turn: 0,
            weights,
            running: HashMap::new(),
            running_total: 0,
            slots,
            share: share.clamp(1, slots.max(1)),
        }
    }

    /// The most slots one tenant may hold: `percent` of `slots`, rounded up.
    pub(crate) fn share_of(slots: usize, percent: u8) -> usize {
        (slots * usize::from(percent)).div_ceil(100)
    }

    pub(crate) fn push(&mut self, tenant: &str, item: T) {
        let queue = self.waiting.entry(tenant.to_owned()).or_default();
        if queue.is_empty() {
            self.turns.push_back(tenant.to_owned());
        }
        queue.push_back(item);
    }

    /// The next delivery to start, while a slot is free: the oldest of the first tenant in turn
    /// that holds less than its share. Counted as running until [`FairQueue::finished`].
    pub(crate) fn next(&mut self) -> Option<(String, T)> {
        if self.running_total >= self.slots {
            return None;
        }
        for _ in 0..self.turns.len() {
            let tenant = self.turns.pop_front()?;
            let running = self.running.get(&tenant).copied().unwrap_or(0);
            if running >= self.share {
                self.started_in_turn = 0;
                self.turns.push_back(tenant);
                continue;
            }
            let queue = self.waiting.get_mut(&tenant)?;
            let item = queue.pop_front()?;
            self.started_in_turn += 1;
            let weight = self.weights.get(&tenant).copied().unwrap_or(1);
            if queue.is_empty() {
                self.waiting.remove(&tenant);
                self.started_in_turn = 0;
            } else if self.started_in_turn < weight {
                self.turns.push_front(tenant.clone());
            } else {
                self.started_in_turn = 0;
                self.turns.push_back(tenant.clone());
            }
            self.running_total += 1;
            *self.running.entry(tenant.clone()).or_default() += 1;
            return Some((tenant, item));
        }
        None
    }

    /// An attempt that [`FairQueue::next`] gave out has ended.
    pub(crate) fn finished(&mut self, tenant: &str) {
        if let Some(running) = self.running.get_mut(tenant) {
            *running -= 1;
            self.running_total -= 1;
            if *running == 0 {
                self.running.remove(tenant);
            }
        }
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(queue: &mut FairQueue<u32>) -> Vec<(String, u32)> {
        std::iter::from_fn(|| queue.next()).collect()
    }

    #[test]
    fn tenants_take_turns_and_keep_their_own_order() {
        let mut queue = FairQueue::new(10, 10, HashMap::new());
        for n in 0..3 {
            queue.push("a", n);
        }
        queue.push("b", 10);
        let order: Vec<_> = started(&mut queue);
        let order: Vec<_> = order.iter().map(|(t, n)| (t.as_str(), *n)).collect();
        assert_eq!(order, [("a", 0), ("b", 10), ("a", 1), ("a", 2)]);
        assert_eq!((queue.waiting(), queue.running_total), (0, 4));
    }

    #[test]
    fn a_tenant_at_its_share_leaves_the_other_slots_to_the_rest() {
        let mut queue = FairQueue::new(4, 3, HashMap::new());
        for n in 0..100 {
            queue.push("busy", n);
        }
        assert_eq!(started(&mut queue).len(), 3, "its share, not every slot");
        queue.push("quiet", 0);
        assert_eq!(started(&mut queue), [("quiet".to_owned(), 0)]);
        assert!(queue.next().is_none(), "every slot is taken");
        queue.finished("quiet");
        assert!(queue.next().is_none(), "the busy tenant holds its share");
        queue.finished("busy");
        assert_eq!(started(&mut queue), [("busy".to_owned(), 3)]);
    }

    #[test]
    fn no_more_start_than_there_are_slots() {
        let mut queue = FairQueue::new(2, 2, HashMap::new());
        for tenant in ["a", "b", "c"] {
            queue.push(tenant, 0);
        }
        assert_eq!(started(&mut queue).len(), 2);
        queue.finished("a");
        assert_eq!(started(&mut queue), [("c".to_owned(), 0)]);
    }

    #[test]
    fn a_share_is_a_percentage_of_the_slots_rounded_up_and_at_least_one() {
        assert_eq!(FairQueue::<u32>::share_of(256, 90), 231);
        assert_eq!(FairQueue::<u32>::share_of(8, 90), 8);
        assert_eq!(FairQueue::<u32>::share_of(4, 50), 2);
        assert_eq!(FairQueue::<u32>::new(4, 0, HashMap::new()).share, 1);
    }

    #[test]
    fn a_tenant_starts_as_many_in_its_turn_as_its_weight() {
        let mut queue = FairQueue::new(100, 100, HashMap::from([("heavy".to_owned(), 3)]));
        for n in 0..5 {
            queue.push("heavy", n);
            queue.push("light", n);
        }
        let order: Vec<_> = started(&mut queue);
        let order: Vec<_> = order.iter().map(|(t, n)| (t.as_str(), *n)).collect();
        assert_eq!(
            order,
            [
                ("heavy", 0),
                ("heavy", 1),
                ("heavy", 2),
                ("light", 0),
                ("heavy", 3),
                ("heavy", 4),
                ("light", 1),
                ("light", 2),
                ("light", 3),
                ("light", 4),
            ]
        );
    }

    #[test]
    fn a_weighted_tenant_at_its_share_gives_up_the_rest_of_its_turn() {
        let mut queue = FairQueue::new(10, 2, HashMap::from([("heavy".to_owned(), 5)]));
        for n in 0..5 {
            queue.push("heavy", n);
        }
        queue.push("light", 0);
        queue.push("light", 1);
        let order: Vec<_> = started(&mut queue);
        let order: Vec<_> = order.iter().map(|(t, n)| (t.as_str(), *n)).collect();
        assert_eq!(
            order,
            [("heavy", 0), ("heavy", 1), ("light", 0), ("light", 1)]
        );
    }
}
