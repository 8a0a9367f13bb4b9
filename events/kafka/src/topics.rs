//! Creating the topology's topics, so that they exist before anything is published or consumed.

use std::time::Duration;

use conveyor_events::{BrokerError, Topology};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaSettings, unavailable};

/// How long the cluster has to answer; beyond it `connect` fails and the caller tries again.
const CREATE_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates every topic of `topology` that does not exist yet.
pub(crate) async fn create(
    settings: &KafkaSettings,
    topology: &Topology,
) -> Result<(), BrokerError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap)
        .create()
        .map_err(|error| {
            BrokerError::Config(format!("kafka: cannot create an admin client: {error}"))
        })?;
    let names = topology.topics();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                settings.partitions,
                TopicReplication::Fixed(settings.replication),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(CREATE_TIMEOUT))
        .operation_timeout(Some(CREATE_TIMEOUT));
    let unreachable = || {
        BrokerError::Unavailable(format!(
            "kafka: {} did not answer within {} s",
            settings.bootstrap,
            CREATE_TIMEOUT.as_secs()
        ))
    };
    // Also bounded here: the admin request's own timeout starts only once it is sent.
    let results = tokio::time::timeout(CREATE_TIMEOUT * 2, admin.create_topics(&topics, &options))
        .await
        .map_err(|_| unreachable())?
        .map_err(|error| match error {
            KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut) => unreachable(),
            error => unavailable("cannot create topics", error),
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((
                topic,
                code @ (RDKafkaErrorCode::InvalidReplicationFactor
                | RDKafkaErrorCode::InvalidPartitions),
            )) => {
                return Err(BrokerError::Config(format!(
                    "kafka: cannot create topic {topic} with {} partitions and replication {}: {code}",
                    settings.partitions, settings.replication
                )));
            }
            Err((topic, code)) => {
                return Err(unavailable(&format!("cannot create topic {topic}"), code));
            }
        }
    }
    Ok(())
}
