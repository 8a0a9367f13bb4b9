//! Which offset each partition may commit while deliveries are acknowledged out of order.
//!
//! Kafka commits one position per partition: everything below it counts as done. Workers settle
//! many messages at once and in any order, so the position may only move up to the lowest
//! message still unsettled, never past it.

use std::collections::{BTreeSet, HashMap};

/// Where one fetched message sits, and under which assignment of its partition it was fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    generation: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Offsets {
    partitions: HashMap<i32, Partition>,
    /// Counts every partition tracked so far: a ticket from before a revocation then never
    /// settles a message of a later assignment of the same partition.
    generations: u64,
}

#[derive(Debug)]
struct Partition {
    generation: u64,
    /// Fetched and not acknowledged: waiting, handed out or handed back.
    unsettled: BTreeSet<i64>,
    /// One past the highest offset fetched.
    next: i64,
    /// The first offset fetched: where this assignment started.
    start: i64,
    /// The position last reported for committing.
    reported: i64,
}

impl Partition {
    fn position(&self) -> i64 {
        self.unsettled.first().copied().unwrap_or(self.next)
    }
}

impl Offsets {
    /// Tracks a message the consumer fetched: it holds its partition's position until acknowledged.
    pub(crate) fn fetched(&mut self, partition: i32, offset: i64) -> Ticket {
        let generations = &mut self.generations;
        let tracked = self.partitions.entry(partition).or_insert_with(|| {
            *generations += 1;
            Partition {
                generation: *generations,
                unsettled: BTreeSet::new(),
                next: offset,
                start: offset,
                reported: offset,
            }
        });
        tracked.unsettled.insert(offset);
        tracked.next = tracked.next.max(offset + 1);
        Ticket {
            partition,
            offset,
            generation: tracked.generation,
        }
    }

    /// Whether `ticket` belongs to the current assignment of its partition.
    pub(crate) fn is_current(&self, ticket: &Ticket) -> bool {
        self.partitions
            .get(&ticket.partition)
            .is_some_and(|tracked| tracked.generation == ticket.generation)
    }

    /// Settles `ticket`; returns its partition's new position if it moved, for committing.
    pub(crate) fn acknowledged(&mut self, ticket: &Ticket) -> Option<i64> {
        let tracked = self
            .partitions
            .get_mut(&ticket.partition)
            .filter(|tracked| tracked.generation == ticket.generation)?;
        tracked.unsettled.remove(&ticket.offset);
        let position = tracked.position();
        if position > tracked.reported {
            tracked.reported = position;
            Some(position)
        } else {
            None
        }
    }

    /// Stops tracking `partitions` (revoked); returns the position of each that moved, to commit
    /// before another consumer takes over.
    pub(crate) fn forget(&mut self, partitions: &[i32]) -> Vec<(i32, i64)> {
        partitions
            .iter()
            .filter_map(|partition| {
                let tracked = self.partitions.remove(partition)?;
                let position = tracked.position();
                (position > tracked.start).then_some((*partition, position))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(offsets: &mut Offsets, partition: i32, range: std::ops::Range<i64>) -> Vec<Ticket> {
        range
            .map(|offset| offsets.fetched(partition, offset))
            .collect()
    }

    #[test]
    fn acknowledgements_in_order_move_the_position_one_by_one() {
        let mut offsets = Offsets::default();
        let tickets = fetch(&mut offsets, 0, 10..13);
        let positions: Vec<_> = tickets.iter().map(|t| offsets.acknowledged(t)).collect();
        assert_eq!(positions, [Some(11), Some(12), Some(13)]);
    }

    #[test]
    fn the_position_never_passes_an_unacknowledged_message() {
        let mut offsets = Offsets::default();
        let tickets = fetch(&mut offsets, 0, 0..4);
        assert_eq!(offsets.acknowledged(&tickets[2]), None);
        assert_eq!(offsets.acknowledged(&tickets[1]), None);
        assert_eq!(offsets.acknowledged(&tickets[0]), Some(3));
        assert_eq!(offsets.acknowledged(&tickets[3]), Some(4));
    }

    #[test]
    fn a_handed_back_message_holds_the_position_until_acknowledged() {
        let mut offsets = Offsets::default();
        let tickets = fetch(&mut offsets, 0, 0..3);
        // The first is handed back (nothing to record), the others are acknowledged.
        assert_eq!(offsets.acknowledged(&tickets[1]), None);
        assert_eq!(offsets.acknowledged(&tickets[2]), None);
        assert!(offsets.is_current(&tickets[0]));
        assert_eq!(offsets.acknowledged(&tickets[0]), Some(3));
    }

    #[test]
    fn an_acknowledgement_counts_once() {
        let mut offsets = Offsets::default();
        let tickets = fetch(&mut offsets, 0, 0..2);
        assert_eq!(offsets.acknowledged(&tickets[0]), Some(1));
        assert_eq!(offsets.acknowledged(&tickets[0]), None);
    }

    #[test]
    fn partitions_move_independently() {
        let mut offsets = Offsets::default();
        let zero = fetch(&mut offsets, 0, 0..2);
        let one = fetch(&mut offsets, 1, 7..9);
        assert_eq!(offsets.acknowledged(&one[0]), Some(8));
        assert_eq!(offsets.acknowledged(&zero[1]), None);
        assert_eq!(offsets.acknowledged(&zero[0]), Some(2));
    }

    #[test]
    fn revoking_returns_the_positions_that_moved() {
        let mut offsets = Offsets::default();
        let zero = fetch(&mut offsets, 0, 0..3);
        fetch(&mut offsets, 1, 5..6);
        offsets.acknowledged(&zero[0]);
        offsets.acknowledged(&zero[2]);
        assert_eq!(offsets.forget(&[0, 1, 2]), [(0, 1)]);
        assert!(!offsets.is_current(&zero[1]));
    }

    #[test]
    fn a_ticket_from_before_a_revocation_does_not_settle_the_next_assignment() {
        let mut offsets = Offsets::default();
        let before = offsets.fetched(0, 5);
        offsets.forget(&[0]);
        let after = offsets.fetched(0, 5);
        assert_ne!(before, after);
        assert!(!offsets.is_current(&before));
        assert_eq!(offsets.acknowledged(&before), None);
        assert_eq!(offsets.acknowledged(&after), Some(6));
    }
}
