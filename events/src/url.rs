use conveyor_schemas::DEFAULT_QUEUE;

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

/// Which of the two command topics a job's command travels on. Workers read both, each through
/// its own read-ahead, so that jobs of a tenant with few unfinished ones never wait behind
/// another tenant's backlog in broker order: beyond a number of unfinished jobs, a tenant's new
/// jobs take the backlog topic, where they wait among other backlogs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Jobs,
    Backlog,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Jobs, Lane::Backlog];

    /// The lane of a new job whose tenant has `unfinished` jobs counted, this one among them,
    /// when jobs beyond `backlog_after` take the backlog; `None` for either is "no backlog lane".
    pub fn of_new_job(unfinished: Option<u32>, backlog_after: Option<u32>) -> Lane {
        match (unfinished, backlog_after) {
            (Some(unfinished), Some(after)) if unfinished > after => Lane::Backlog,
            _ => Lane::Jobs,
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

    /// Commands for workers whose tenant had a backlog when they were sent (see [`Lane`]).
    pub fn backlog(&self) -> String {
        format!("{}jobs-backlog", self.prefix)
    }

    /// The topic that carries the commands of `queue` on `lane`. The default queue keeps the
    /// names it had before there were other queues; the others end in a suffix per lane, so no
    /// two queue names can ever make one topic name.
    pub fn lane(&self, queue: &str, lane: Lane) -> String {
        match (queue == DEFAULT_QUEUE, lane) {
            (true, Lane::Jobs) => self.jobs(),
            (true, Lane::Backlog) => self.backlog(),
            (false, Lane::Jobs) => format!("{}queue.{queue}.jobs", self.prefix),
            (false, Lane::Backlog) => format!("{}queue.{queue}.backlog", self.prefix),
        }
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

    #[test]
    fn a_tenants_jobs_beyond_its_backlog_threshold_take_the_backlog_lane() {
        assert_eq!(Lane::of_new_job(Some(100), Some(100)), Lane::Jobs);
        assert_eq!(Lane::of_new_job(Some(101), Some(100)), Lane::Backlog);
        assert_eq!(Lane::of_new_job(None, Some(100)), Lane::Jobs, "not counted");
        assert_eq!(Lane::of_new_job(Some(5000), None), Lane::Jobs, "no lane");
        let topics = Topics::new("p-");
        assert_eq!(topics.lane(DEFAULT_QUEUE, Lane::Jobs), "p-jobs");
        assert_eq!(topics.lane(DEFAULT_QUEUE, Lane::Backlog), "p-jobs-backlog");
        assert_eq!(topics.lane("mail", Lane::Jobs), "p-queue.mail.jobs");
        assert_eq!(topics.lane("mail", Lane::Backlog), "p-queue.mail.backlog");
    }
}
