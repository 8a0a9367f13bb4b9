use crate::{Lane, Topics};

/// The topics and consumer groups a deployment needs, declared by every process before it
/// publishes or subscribes, so that no group misses a message published before its first
/// consumer joined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// `(topic, group)`: each group on a topic gets its own copy of every message.
    pub groups: Vec<(String, String)>,
    /// Topics with no consumer whose messages are kept for inspection (dead letters).
    pub kept: Vec<String>,
}

impl Topology {
    /// Conveyor's own: workers and the recorder on both lanes of each of `queues`; dead letters
    /// kept.
    pub fn conveyor<'q>(topics: &Topics, queues: impl IntoIterator<Item = &'q str>) -> Topology {
        let mut topology = Topology {
            groups: Vec::new(),
            kept: vec![topics.dead_letter()],
        };
        for queue in queues {
            topology
                .groups
                .extend(Topology::of_queue(topics, queue).groups);
        }
        topology
    }

    /// What one queue needs: workers and the recorder on both of its lanes.
    pub fn of_queue(topics: &Topics, queue: &str) -> Topology {
        let groups = Lane::ALL.into_iter().flat_map(|lane| {
            [Topics::WORKERS, Topics::RECORDER]
                .map(|group| (topics.lane(queue, lane), group.to_owned()))
        });
        Topology {
            groups: groups.collect(),
            kept: Vec::new(),
        }
    }

    /// Adds what `other` declares that this does not.
    pub fn merge(&mut self, other: &Topology) {
        for group in &other.groups {
            if !self.groups.contains(group) {
                self.groups.push(group.clone());
            }
        }
        for kept in &other.kept {
            if !self.kept.contains(kept) {
                self.kept.push(kept.clone());
            }
        }
    }

    /// Every topic named, each once, in the order first named.
    pub fn topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = Vec::new();
        let named = self.groups.iter().map(|(topic, _)| topic.as_str());
        for topic in named.chain(self.kept.iter().map(String::as_str)) {
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conveyor_declares_both_groups_on_both_lanes_of_each_queue_and_keeps_dead_letters() {
        let topics = Topics::new("t-");
        let topology = Topology::conveyor(&topics, ["default", "mail"]);
        assert_eq!(
            topology.topics(),
            [
                "t-jobs",
                "t-jobs-backlog",
                "t-queue.mail.jobs",
                "t-queue.mail.backlog",
                "t-dead-letter"
            ]
        );
        assert_eq!(topology.groups.len(), 8);
    }

    #[test]
    fn merging_adds_only_what_is_new() {
        let topics = Topics::new("t-");
        let mut topology = Topology::conveyor(&topics, ["default"]);
        topology.merge(&Topology::conveyor(&topics, ["default", "mail"]));
        assert_eq!(topology.groups.len(), 8);
        assert_eq!(topology.kept, ["t-dead-letter"]);
    }
}
