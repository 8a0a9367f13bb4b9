//! Consumer lag, Kafka's answer to `Broker::depth`. `depth` must answer at once, so the lag is
//! measured in the background, from the first time it is asked for (the api's metrics); processes
//! that never ask spend nothing on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once, RwLock, Weak};
use std::time::Duration;

use conveyor_events::Topology;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::KafkaSettings;
use crate::consumer::group_id;

/// How often the lag is measured again.
const REFRESH: Duration = Duration::from_secs(5);
/// How long one metadata or offset request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Lag {
    settings: KafkaSettings,
    /// What is measured: the topology given at connect, and what was declared since.
    topology: RwLock<Topology>,
    started: Once,
    /// Per topic, as last measured; a topic whose measurement failed is left out.
    depths: RwLock<HashMap<String, u64>>,
}

impl Lag {
    pub(crate) fn new(settings: &KafkaSettings, topology: &Topology) -> Arc<Lag> {
        Arc::new(Lag {
            settings: settings.clone(),
            topology: RwLock::new(topology.clone()),
            started: Once::new(),
            depths: RwLock::default(),
        })
    }

    /// Measures the topics and groups of `topology` too, from the next measurement on.
    pub(crate) fn add(&self, topology: &Topology) {
        self.topology
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .merge(topology);
    }

    /// For a topic with groups, how far its slowest group is behind (messages not yet committed,
    /// in flight included); for a kept topic, how many messages it holds. `None` until measured.
    pub(crate) fn depth(self: &Arc<Self>, topic: &str) -> Option<u64> {
        self.started.call_once(|| self.start());
        let depths = self
            .depths
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        depths.get(topic).copied()
    }

    fn start(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                "Kafka lag is not measured: depth was first asked for outside a runtime."
            );
            return;
        };
        match Probes::new(&self.settings) {
            Ok(probes) => {
                runtime.spawn(refresh(Arc::downgrade(self), Arc::new(probes)));
            }
            Err(error) => {
                tracing::warn!(%error, "Kafka lag is not measured: cannot create its clients.");
            }
        }
    }
}

/// Measures until the broker is dropped.
async fn refresh(lag: Weak<Lag>, probes: Arc<Probes>) {
    let mut ticks = tokio::time::interval(REFRESH);
    loop {
        ticks.tick().await;
        let Some(lag) = lag.upgrade() else { return };
        let measuring = probes.clone();
        let topology = lag
            .topology
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        // Each request blocks its thread until answered or timed out.
        let Ok(depths) = tokio::task::spawn_blocking(move || measuring.measure(&topology)).await
        else {
            return;
        };
        *lag.depths
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = depths;
    }
}

/// Clients that only read: partitions and watermarks, and each group's committed offsets (which
/// Kafka answers per consumer group, hence one client per group, made when the group is first
/// measured; none of them joins its group).
struct Probes {
    settings: KafkaSettings,
    watermarks: BaseConsumer,
    /// By Kafka group id.
    groups: Mutex<HashMap<String, Arc<BaseConsumer>>>,
}

impl Probes {
    fn new(settings: &KafkaSettings) -> KafkaResult<Probes> {
        Ok(Probes {
            settings: settings.clone(),
            watermarks: client(settings, None)?,
            groups: Mutex::default(),
        })
    }

    fn measure(&self, topology: &Topology) -> HashMap<String, u64> {
        topology
            .topics()
            .into_iter()
            .filter_map(|topic| match self.measure_topic(topology, topic) {
                Ok(depth) => Some((topic.to_owned(), depth)),
                Err(error) => {
                    tracing::debug!(%topic, %error, "Could not measure the lag of a Kafka topic.");
                    None
                }
            })
            .collect()
    }

    /// The client that reads `group`'s committed offsets on `topic`.
    fn group(&self, topic: &str, group: &str) -> KafkaResult<Arc<BaseConsumer>> {
        let id = group_id(topic, group);
        let mut groups = self
            .groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = groups.get(&id) {
            return Ok(client.clone());
        }
        let made = Arc::new(client(&self.settings, Some(id.clone()))?);
        groups.insert(id, made.clone());
        Ok(made)
    }

    fn measure_topic(&self, topology: &Topology, topic: &str) -> KafkaResult<u64> {
        let metadata = self
            .watermarks
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        let mut partitions = TopicPartitionList::new();
        let mut marks = HashMap::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let id = partition.id();
            marks.insert(
                id,
                self.watermarks
                    .fetch_watermarks(topic, id, REQUEST_TIMEOUT)?,
            );
            partitions.add_partition(topic, id);
        }
        let groups = topology
            .groups
            .iter()
            .filter(|(of, _)| of == topic)
            .map(|(_, group)| self.group(topic, group))
            .collect::<KafkaResult<Vec<_>>>()?;
        if groups.is_empty() {
            return Ok(marks.values().map(|(low, high)| (high - low) as u64).sum());
        }
        let mut deepest = 0;
        for group in groups {
            let committed = group.committed_offsets(partitions.clone(), REQUEST_TIMEOUT)?;
            let behind: i64 = committed
                .elements()
                .iter()
                .filter_map(|element| {
                    let (low, high) = marks.get(&element.partition())?;
                    // A group that never committed starts at the beginning.
                    let from = match element.offset() {
                        Offset::Offset(offset) => offset.max(*low),
                        _ => *low,
                    };
                    Some((high - from).max(0))
                })
                .sum();
            deepest = deepest.max(behind as u64);
        }
        Ok(deepest)
    }
}

fn client(settings: &KafkaSettings, group: Option<String>) -> KafkaResult<BaseConsumer> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.bootstrap);
    if let Some(group) = group {
        config.set("group.id", group);
    }
    config.create::<BaseConsumer>()
}
