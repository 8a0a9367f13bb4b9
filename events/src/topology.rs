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
    /// Conveyor's own: workers and the recorder on both command topics; dead letters kept.
    pub fn conveyor(topics: &Topics) -> Topology {
        let groups = Lane::ALL.into_iter().flat_map(|lane| {
            [Topics::WORKERS, Topics::RECORDER].map(|group| (topics.lane(lane), group.to_owned()))
        });
        Topology {
            groups: groups.collect(),
            kept: vec![topics.dead_letter()],
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
    fn conveyor_declares_both_groups_on_both_lanes_and_keeps_dead_letters() {
        let topology = Topology::conveyor(&Topics::new("t-"));
        assert_eq!(
            topology.topics(),
            ["t-jobs", "t-jobs-backlog", "t-dead-letter"]
        );
        assert_eq!(topology.groups.len(), 4);
    }
}
