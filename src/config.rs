//! The command line: every option is also a `CONVEYOR_*` environment variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use conveyor_api::Secret;
use conveyor_workers::QueueChoice;

#[derive(Debug, Parser)]
#[command(
    name = "conveyor",
    version,
    args_override_self = true,
    about = "Asynchronous job API: accept over HTTP, run on worker pools, poll or stream the result."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, env = "CONVEYOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// API and workers in one process, on the embedded default (no services needed).
    Dev(DevArgs),
    /// The HTTP API only; scale it behind a load balancer.
    Api(ApiArgs),
    /// Workers only; scale them by running more.
    Worker(WorkerArgs),
    /// Bring the database schema up to date.
    Migrate(MigrateArgs),
    /// Mint a JWT for a tenant (signed with CONVEYOR_JWT_SECRET).
    Token(TokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub backends: BackendArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub workers: WorkerPoolArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    #[command(flatten)]
    pub backends: BackendArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub backends: BackendArgs,
    #[command(flatten)]
    pub workers: WorkerPoolArgs,
    /// Address of the worker's `/healthz`, `/readyz` and `/metrics`; none when unset.
    #[arg(long, env = "CONVEYOR_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The database to migrate.
    #[arg(long, env = "CONVEYOR_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// PostgreSQL schema of Conveyor's tables (created if missing); `public` when unset.
    #[arg(long, env = "CONVEYOR_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://conveyor.db?mode=rwc";

#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Broker: memory:// (in-process, durable through the database), kafka://host:9092 or
    /// amqp://user:pass@host:5672/%2f.
    #[arg(long, env = "CONVEYOR_BROKER_URL", default_value = "memory://")]
    pub broker_url: String,
    /// Store: sqlite://file.db?mode=rwc or postgres://user:pass@host/db.
    #[arg(long, env = "CONVEYOR_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// Optional read replica for job reads and lists.
    #[arg(long, env = "CONVEYOR_DATABASE_READ_URL")]
    pub database_read_url: Option<String>,
    /// PostgreSQL schema of Conveyor's tables; `public` when unset.
    #[arg(long, env = "CONVEYOR_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// A TOML file of per-tenant overrides of the limits, allowed job types and weights (see the
    /// README); api and worker processes read it.
    #[arg(long, env = "CONVEYOR_TENANTS_FILE")]
    pub tenants_file: Option<std::path::PathBuf>,
    /// A TOML file of job types (`[job_types.<name>]` tables, as `PUT /v1/job-types/{name}` takes
    /// them), registered at start.
    #[arg(long, env = "CONVEYOR_JOB_TYPES_FILE")]
    pub job_types_file: Option<std::path::PathBuf>,
    /// First retry delay, in milliseconds; doubles each attempt, with jitter. For jobs of types
    /// that name no backoff, run by Conveyor's workers or by HTTP workers.
    #[arg(long, env = "CONVEYOR_RETRY_BASE_MS", default_value_t = 100)]
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[arg(long, env = "CONVEYOR_RETRY_MAX_MS", default_value_t = 30_000)]
    pub retry_max_ms: u64,
    /// Cache: memory:// or redis://host:6379.
    #[arg(long, env = "CONVEYOR_CACHE_URL", default_value = "memory://")]
    pub cache_url: String,
    /// Prefix of topic, queue, consumer group and Redis key names, so deployments (and tests)
    /// can share a broker and a cache.
    #[arg(long, env = "CONVEYOR_TOPIC_PREFIX", default_value = "conveyor.")]
    pub topic_prefix: String,
    /// Partitions of each Kafka topic Conveyor creates: the most worker processes that can
    /// share one consumer group.
    #[arg(long, env = "CONVEYOR_KAFKA_PARTITIONS", default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub kafka_partitions: i32,
    /// Replication factor of each Kafka topic Conveyor creates.
    #[arg(long, env = "CONVEYOR_KAFKA_REPLICATION", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub kafka_replication: i32,
    /// RabbitMQ queue type: quorum (replicated, the default) or classic.
    #[arg(long, env = "CONVEYOR_AMQP_QUEUE_TYPE", value_enum, default_value_t = AmqpQueueType::Quorum)]
    pub amqp_queue_type: AmqpQueueType,
    /// How long a publish may wait for the broker's acknowledgement before the submission is
    /// answered `503`, in milliseconds.
    #[arg(long, env = "CONVEYOR_PUBLISH_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=300_000))]
    pub publish_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AmqpQueueType {
    Quorum,
    Classic,
}

#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "CONVEYOR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// HS256 secret that signs client tokens. `dev` makes one up when unset; `api` needs it or a
    /// JWKS, or both.
    #[arg(long, env = "CONVEYOR_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// JWKS whose keys verify RS256, ES256 and EdDSA tokens by their `kid`: a file path or an
    /// http(s) URL.
    #[arg(long, env = "CONVEYOR_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// How often the JWKS is read again, in seconds. A token naming an unknown key also sets off
    /// a read, at most one every few seconds.
    #[arg(long, env = "CONVEYOR_JWKS_REFRESH_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub jwks_refresh_secs: u64,
    /// The issuer (`iss`) that tokens signed by JWKS keys must name; not checked when unset.
    #[arg(long, env = "CONVEYOR_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The audience (`aud`) that tokens signed by JWKS keys must name; not checked when unset.
    #[arg(long, env = "CONVEYOR_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on a token's `exp` and `nbf`, in seconds.
    #[arg(long, env = "CONVEYOR_JWT_LEEWAY_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub jwt_leeway_secs: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "CONVEYOR_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Cap on long-poll `?wait=`, in seconds.
    #[arg(long, env = "CONVEYOR_MAX_WAIT_SECS", default_value_t = 30)]
    pub max_wait_secs: u64,
    /// Attempts of a job that does not say.
    #[arg(long, env = "CONVEYOR_DEFAULT_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub default_max_attempts: u32,
    /// HTTP worker threads; 0 for one per core.
    #[arg(long, env = "CONVEYOR_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What a tenant may do, and what any client may send.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Submissions (and cancellations) per second per tenant, shared by every api replica when
    /// the cache is Redis; 0 for no limit.
    #[arg(long, env = "CONVEYOR_RATE_LIMIT", default_value_t = 5_000.0)]
    pub rate_limit: f64,
    /// Submissions a tenant may make at once on top of the rate; 0 for one second's worth.
    #[arg(long, env = "CONVEYOR_RATE_BURST", default_value_t = 0)]
    pub rate_burst: u32,
    /// Reads (job lookups, lists, event streams) per second per tenant; 0 for no limit.
    #[arg(long, env = "CONVEYOR_READ_RATE_LIMIT", default_value_t = 10_000.0)]
    pub read_rate_limit: f64,
    /// Reads a tenant may make at once on top of the rate; 0 for one second's worth.
    #[arg(long, env = "CONVEYOR_READ_RATE_BURST", default_value_t = 0)]
    pub read_rate_burst: u32,
    /// Unfinished jobs a tenant may have at once; 0 for no limit.
    #[arg(long, env = "CONVEYOR_MAX_INFLIGHT", default_value_t = 100_000)]
    pub max_inflight: u32,
    /// Unfinished jobs a tenant may have before its new jobs take the backlog topic, where they
    /// wait among other tenants' backlogs instead of ahead of every tenant's new jobs; 0 for no
    /// backlog topic.
    #[arg(long, env = "CONVEYOR_TENANT_BACKLOG_AFTER", default_value_t = 1_000)]
    pub tenant_backlog_after: u32,
    /// Event streams a tenant may hold open on one api server.
    #[arg(long, env = "CONVEYOR_MAX_STREAMS_PER_TENANT", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_streams_per_tenant: u64,
    /// Long-polls (`GET /v1/jobs/{id}?wait=`) a tenant may have waiting on one api server.
    #[arg(long, env = "CONVEYOR_MAX_LONG_POLLS_PER_TENANT", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_long_polls_per_tenant: u64,
    /// Bytes of a request's header names and values.
    #[arg(long, env = "CONVEYOR_MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(1024..=131_072))]
    pub max_header_bytes: u64,
    /// Time a client has to send a request's head, and again its body, in milliseconds.
    #[arg(long, env = "CONVEYOR_CLIENT_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub client_timeout_ms: u64,
    /// Nesting of arrays and objects in a JSON body.
    #[arg(long, env = "CONVEYOR_MAX_JSON_DEPTH", default_value_t = 32, value_parser = clap::value_parser!(u64).range(2..=100))]
    pub max_json_depth: u64,
    /// Bytes of one JSON string or key.
    #[arg(long, env = "CONVEYOR_MAX_JSON_STRING_BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u64).range(16..=16_777_216))]
    pub max_json_string_bytes: u64,
    /// Items of one JSON array, or members of one object.
    #[arg(long, env = "CONVEYOR_MAX_JSON_ITEMS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_json_items: u64,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerPoolArgs {
    /// Attempts run at once by this process (and messages it holds unacknowledged).
    #[arg(long, env = "CONVEYOR_WORKER_CONCURRENCY", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,
    /// The most of a worker process's slots (`CONVEYOR_WORKER_CONCURRENCY`) one tenant's jobs may
    /// hold, in percent, rounded up: the rest stay for other tenants, however long its jobs run.
    #[arg(long, env = "CONVEYOR_TENANT_SLOT_SHARE", default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub tenant_slot_share: u8,
    /// Time limit of an attempt whose job sets no timeout_ms, in milliseconds.
    #[arg(long, env = "CONVEYOR_JOB_TIMEOUT_MS", default_value_t = 60_000)]
    pub job_timeout_ms: u64,
    /// How long a shutdown waits for running attempts, in seconds.
    #[arg(long, env = "CONVEYOR_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// How often the deployment's rescuer looks for running jobs whose worker was lost, in
    /// milliseconds (at least 5,000): such a job is rescued after two looks.
    #[arg(long, env = "CONVEYOR_RESCUE_EVERY_MS", default_value_t = 10_000)]
    pub rescue_every_ms: u64,
    /// Hours a finished job is kept in the store before it is deleted; 0 keeps jobs for good. At
    /// least 24: an Idempotency-Key is remembered for a day, and must not outlive its job.
    #[arg(long, env = "CONVEYOR_JOB_RETENTION_HOURS", default_value_t = 168, value_parser = retention_hours)]
    pub job_retention_hours: u64,
    /// The queues whose jobs this process runs, comma-separated (`--queues mail,thumbnails`);
    /// unset: every queue some job type names, and each new one as it is registered. The
    /// recorder in every worker process records every queue all the same.
    #[arg(long, env = "CONVEYOR_QUEUES", value_delimiter = ',', value_parser = queue_name)]
    pub queues: Vec<String>,
    /// Where push deliveries may go beyond public addresses: comma-separated host names and
    /// CIDRs (`hooks.internal,10.1.0.0/16,127.0.0.1/32`). Loopback, private, link-local and
    /// metadata addresses are refused unless listed, checked after DNS resolution.
    #[arg(long, env = "CONVEYOR_OUTBOUND_ALLOW", default_value = "")]
    pub outbound_allow: String,
    /// The most of a push endpoint's answer read, in bytes; a longer answer fails the attempt.
    #[arg(long, env = "CONVEYOR_PUSH_MAX_BODY_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=64 * 1024 * 1024))]
    pub push_max_body_bytes: u64,
}

impl WorkerPoolArgs {
    pub fn queue_choice(&self) -> QueueChoice {
        if self.queues.is_empty() {
            QueueChoice::Every
        } else {
            QueueChoice::Only(self.queues.clone())
        }
    }
}

fn queue_name(value: &str) -> Result<String, String> {
    let value = value.trim();
    if conveyor_schemas::valid_name(value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "`{value}` is not a queue name: use [a-z0-9][a-z0-9._-]{{0,62}}"
        ))
    }
}

fn retention_hours(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(hours) if hours == 0 || (24..=24 * 365 * 100).contains(&hours) => Ok(hours),
        Ok(_) => Err(
            "must be 0 (keep jobs for good) or 24 to 876000 hours: an Idempotency-Key \
             is remembered for 24 hours, and must not outlive the job it names"
                .into(),
        ),
        Err(_) => Err(format!("`{value}` is not a whole number of hours")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The secret the API verifies with.
    #[arg(long, env = "CONVEYOR_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Secret,
    /// The tenant the token acts for.
    #[arg(long, env = "CONVEYOR_TOKEN_TENANT", default_value = "dev")]
    pub tenant: String,
    /// Who the token is for (the `sub` claim).
    #[arg(long, env = "CONVEYOR_TOKEN_SUBJECT", default_value = "dev")]
    pub subject: String,
    /// Space-separated scopes.
    #[arg(
        long,
        env = "CONVEYOR_TOKEN_SCOPE",
        default_value = "jobs:write jobs:read events:read"
    )]
    pub scope: String,
    /// Validity, in hours.
    #[arg(long, env = "CONVEYOR_TOKEN_HOURS", default_value_t = 24)]
    pub hours: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_jobs_for_good_or_at_least_as_long_as_their_idempotency_keys() {
        assert_eq!(retention_hours("0"), Ok(0));
        assert_eq!(retention_hours("24"), Ok(24));
        assert!(
            retention_hours("23")
                .unwrap_err()
                .contains("Idempotency-Key")
        );
        assert!(retention_hours("a week").is_err());
    }
}
