use crate::BrokerError;

/// The broker a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerKind {
    /// `memory://`: in-process, durable through the embedded database.
    Memory,
    /// `kafka://host:9092[,host:9092]`
    Kafka { bootstrap: String },
    /// `amqp://user:pass@host:5672/%2f`
    Amqp { url: String },
}

impl BrokerKind {
    pub fn parse(url: &str) -> Result<BrokerKind, BrokerError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            BrokerError::Config(format!(
                "CONVEYOR_BROKER_URL `{url}` has no scheme; use memory://, kafka:// or amqp://"
            ))
        })?;
        match scheme {
            "memory" => Ok(BrokerKind::Memory),
            "kafka" => Ok(BrokerKind::Kafka {
                bootstrap: rest.trim_end_matches('/').to_owned(),
            }),
            "amqp" | "amqps" => Ok(BrokerKind::Amqp {
                url: url.to_owned(),
            }),
            other => Err(BrokerError::Config(format!(
                "CONVEYOR_BROKER_URL scheme `{other}` is not supported; use memory://, kafka:// or amqp://"
            ))),
        }
    }
}

/// Topic (or queue) names, under a prefix so that deployments and tests can share a broker.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// The workers' consumer group on the jobs topic.
    pub const WORKERS: &str = "conveyor-workers";
    /// The recorder's consumer group on the jobs topic: it records every accepted job.
    pub const RECORDER: &str = "conveyor-recorder";

    pub fn new(prefix: impl Into<String>) -> Topics {
        Topics {
            prefix: prefix.into(),
        }
    }

    /// Commands for workers.
    pub fn jobs(&self) -> String {
        format!("{}jobs", self.prefix)
    }

    /// Commands whose job failed for good, kept for inspection and replay.
    pub fn dead_letter(&self) -> String {
        format!("{}dead-letter", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_broker() {
        assert_eq!(BrokerKind::parse("memory://").unwrap(), BrokerKind::Memory);
        assert_eq!(
            BrokerKind::parse("kafka://127.0.0.1:9092").unwrap(),
            BrokerKind::Kafka {
                bootstrap: "127.0.0.1:9092".into()
            }
        );
        assert!(matches!(
            BrokerKind::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap(),
            BrokerKind::Amqp { .. }
        ));
        assert!(BrokerKind::parse("nats://x").is_err());
        assert!(BrokerKind::parse("localhost").is_err());
    }
}
