use crate::Topics;

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
    /// Conveyor's own: workers and the recorder on the jobs topic; dead letters kept.
    pub fn conveyor(topics: &Topics) -> Topology {
        Topology {
            groups: vec![
                (topics.jobs(), Topics::WORKERS.to_owned()),
                (topics.jobs(), Topics::RECORDER.to_owned()),
            ],
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
    fn conveyor_declares_both_groups_and_keeps_dead_letters() {
        let topology = Topology::conveyor(&Topics::new("t-"));
        assert_eq!(topology.topics(), ["t-jobs", "t-dead-letter"]);
        assert_eq!(topology.groups.len(), 2);
    }
}
