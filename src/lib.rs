//! The `conveyor` command: wires the backends named by URLs to the API and the workers, and runs
//! them as `dev` (together), `api` or `worker`.

mod backends;
mod cli;
pub mod config;
mod job_types_file;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use conveyor_api::{
    Api, ApiDependencies, ApiHandle, ApiSettings, AuthSettings, Authenticator, DefaultLimits,
    InputLimits, JwksSettings, Policies, Secret,
};
use conveyor_store::redact;
use conveyor_workers::{
    OutboundPolicy, Pruner, Push, Recorder, Rescuer, WorkerPool, WorkerSettings,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use backends::{Backends, Role, journal_url};
pub use cli::run;
pub use config::{Cli, Command};
pub use conveyor_schemas::JobTypeInfo;
pub use conveyor_workers::{Handler, JobContext, JobError, Registry};

use crate::backends::patiently;
use crate::config::{BackendArgs, HttpArgs, LimitArgs, WorkerPoolArgs};

/// How often the deployment's pruner deletes the jobs past the retention period.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A started Conveyor: stop it with [`Running::shutdown`], wait for it with [`Running::wait`].
pub struct Running {
    /// The HTTP port: the API's, or a worker's metrics server's.
    pub port: Option<u16>,
    /// The secret that signs tokens, when this process serves the API.
    pub jwt_secret: Option<String>,
    shutdown: CancellationToken,
    api: Option<ApiHandle>,
    tasks: JoinSet<anyhow::Result<()>>,
    backends: Option<Backends>,
}

impl Running {
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Runs until shutdown is asked for or a part stops with an error; then stops the API first
    /// (no new work) and lets the workers drain.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        if self.tasks.is_empty() {
            // `migrate` and `token`: nothing keeps running.
            return Ok(());
        }
        let mut outcome = Ok(());
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            Some(ended) = self.tasks.join_next() => {
                outcome = ended.context("A task panicked").and_then(|result| result);
            }
        }
        self.shutdown.cancel();
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        while let Some(ended) = self.tasks.join_next().await {
            let ended = ended.context("A task panicked").and_then(|result| result);
            if outcome.is_ok() {
                outcome = ended;
            }
        }
        if let Some(backends) = &self.backends
            && let Err(error) = backends.flush().await
        {
            tracing::warn!(
                error = format!("{error:#}"),
                "Some writes could not be flushed; they will be replayed at the next start."
            );
        }
        outcome
    }
}

/// Starts what `command` asks for, with Conveyor's built-in handlers. `migrate` and `token` finish
/// before this returns.
pub async fn start(command: Command) -> anyhow::Result<Running> {
    start_with(command, Registry::built_in()).await
}

/// Starts what `command` asks for; workers run the handlers of `registry`, and register the
/// types of its own it brings.
pub async fn start_with(command: Command, registry: Registry) -> anyhow::Result<Running> {
    let mut running = Running {
        port: None,
        jwt_secret: None,
        shutdown: CancellationToken::new(),
        api: None,
        tasks: JoinSet::new(),
        backends: None,
    };
    match command {
        Command::Dev(args) => {
            let tenants = tenants_file(&args.backends)?;
            let backends =
                Backends::connect(&args.backends, Role::Both, prefetch(&args.workers)).await?;
            follow_job_types(&mut running, &backends);
            let secret = args
                .http
                .jwt_secret
                .clone()
                .unwrap_or_else(|| token::random_secret().into());
            start_api(
                &mut running,
                &backends,
                &args.http,
                &tenants,
                Some(secret.clone()),
            )
            .await?;
            start_workers(&mut running, &backends, &args.workers, &tenants, registry).await?;
            print_dev_banner(&running, &args.backends, secret.expose());
            running.backends = Some(backends);
        }
        Command::Api(args) => {
            anyhow::ensure!(
                args.http.jwt_secret.is_some() || args.http.jwks_url.is_some(),
                "`conveyor api` verifies tokens with CONVEYOR_JWT_SECRET or CONVEYOR_JWKS_URL \
                 (or both): set one"
            );
            let tenants = tenants_file(&args.backends)?;
            // The API only publishes; it holds no deliveries.
            let backends = Backends::connect(&args.backends, Role::ApiOnly, 1).await?;
            follow_job_types(&mut running, &backends);
            start_api(
                &mut running,
                &backends,
                &args.http,
                &tenants,
                args.http.jwt_secret.clone(),
            )
            .await?;
            running.backends = Some(backends);
        }
        Command::Worker(args) => {
            let tenants = tenants_file(&args.backends)?;
            let backends =
                Backends::connect(&args.backends, Role::WorkerOnly, prefetch(&args.workers))
                    .await?;
            follow_job_types(&mut running, &backends);
            start_workers(&mut running, &backends, &args.workers, &tenants, registry).await?;
            if let Some(listen) = &args.metrics_listen {
                start_operations(&mut running, &backends, listen)?;
            }
            running.backends = Some(backends);
        }
        Command::Migrate(args) => {
            let database = conveyor_store::Database::connect(
                &args.database_url,
                None,
                args.database_schema.as_deref(),
            )
            .await?;
            database.migrate().await.context("Failed to migrate")?;
            tracing::info!("The database schema is up to date.");
        }
        Command::Token(args) => {
            let token = token::mint(
                args.jwt_secret.expose().as_bytes(),
                &args.tenant,
                &args.subject,
                &args.scope,
                chrono::Duration::hours(args.hours),
            );
            println!("{token}");
        }
    }
    Ok(running)
}

async fn start_api(
    running: &mut Running,
    backends: &Backends,
    http: &HttpArgs,
    tenants: &str,
    secret: Option<Secret>,
) -> anyhow::Result<()> {
    running.jwt_secret = secret.as_ref().map(|secret| secret.expose().to_owned());
    let auth = AuthSettings {
        secret,
        jwks: http.jwks_url.clone().map(|location| JwksSettings {
            location,
            refresh_every: Duration::from_secs(http.jwks_refresh_secs),
        }),
        issuer: http.jwt_issuer.clone(),
        audience: http.jwt_audience.clone(),
        leeway: Duration::from_secs(http.jwt_leeway_secs),
    };
    // Settings that cannot work stop the server before it waits for anything.
    let policies = policies(&http.limits, tenants)?;
    let authenticator = patiently("JWKS", || Authenticator::connect(auth.clone())).await?;
    let api = Api::bind(
        &http.listen,
        dependencies(backends),
        ApiSettings {
            authenticator,
            max_body_bytes: http.max_body_bytes,
            max_wait: Duration::from_secs(http.max_wait_secs),
            default_max_attempts: http.default_max_attempts,
            backoff: backends.backoff,
            backlog_after: (http.limits.tenant_backlog_after > 0)
                .then_some(http.limits.tenant_backlog_after),
            http_workers: http.http_workers,
            policies,
            max_streams_per_tenant: http.limits.max_streams_per_tenant as usize,
            max_long_polls_per_tenant: http.limits.max_long_polls_per_tenant as usize,
            input: InputLimits {
                max_header_bytes: http.limits.max_header_bytes as usize,
                client_timeout: Duration::from_millis(http.limits.client_timeout_ms),
                max_json_depth: http.limits.max_json_depth as usize,
                max_json_string_bytes: http.limits.max_json_string_bytes as usize,
                max_json_items: http.limits.max_json_items as usize,
            },
        },
    )
    .with_context(|| format!("Failed to listen on {}", http.listen))?;
    running.port = Some(api.port());
    running.api = Some(api.handle());
    running
        .tasks
        .spawn(async move { api.run().await.context("The API server failed") });
    Ok(())
}

/// The tenants file's text; empty when there is none.
fn tenants_file(args: &BackendArgs) -> anyhow::Result<String> {
    match &args.tenants_file {
        None => Ok(String::new()),
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read CONVEYOR_TENANTS_FILE {}", path.display())),
    }
}

/// The defaults of every tenant, with the overrides of the tenants file (its text).
fn policies(args: &LimitArgs, tenants: &str) -> anyhow::Result<Policies> {
    let defaults = DefaultLimits {
        submit_rate: args.rate_limit,
        submit_burst: args.rate_burst,
        read_rate: args.read_rate_limit,
        read_burst: args.read_rate_burst,
        max_in_flight: args.max_inflight,
    };
    Ok(Policies::with_overrides(defaults, tenants)?)
}

fn dependencies(backends: &Backends) -> ApiDependencies {
    ApiDependencies {
        queues: backends.queues.clone(),
        ledger: backends.ledger.clone(),
        database: backends.database.clone(),
        catalog: backends.catalog.clone(),
        rate_limiter: backends.rate_limiter.clone(),
    }
}

/// Registers the types a worker binary brings with its handlers (beyond Conveyor's built-in
/// ones), so that every api replica accepts their jobs; refused, naming the type and the field,
/// when one cannot be a type.
async fn register_own_types(backends: &Backends, registry: &Registry) -> anyhow::Result<()> {
    let types = registry.types();
    if types.is_empty() {
        return Ok(());
    }
    conveyor_schemas::JobTypeCatalog::with_registered(types.iter().cloned()).map_err(|error| {
        anyhow::anyhow!(
            "The worker's own job types cannot be registered: {}: {}",
            error.field,
            error.message
        )
    })?;
    backends::register(backends.catalog.store(), types).await?;
    backends
        .catalog
        .refresh()
        .await
        .context("Failed to read the registered job types")?;
    tracing::info!(
        types = types.len(),
        "Registered the worker's own job types."
    );
    Ok(())
}

/// Keeps the process's job types as the store has them, so that a type changed through any api
/// replica is seen here within a second.
fn follow_job_types(running: &mut Running, backends: &Backends) {
    let (catalog, shutdown) = (backends.catalog.clone(), running.shutdown.clone());
    running.tasks.spawn(async move {
        catalog.follow(shutdown).await;
        Ok(())
    });
}

/// A worker's `/healthz`, `/readyz` and `/metrics`.
fn start_operations(
    running: &mut Running,
    backends: &Backends,
    listen: &str,
) -> anyhow::Result<()> {
    let server = Api::bind_operations(listen, dependencies(backends))
        .with_context(|| format!("Failed to listen on {listen}"))?;
    running.port = Some(server.port());
    running.api = Some(server.handle());
    running
        .tasks
        .spawn(async move { server.run().await.context("The metrics server failed") });
    Ok(())
}

/// Messages a subscription (one lane) may hold unacknowledged: the attempts running, all of them
/// from that lane at worst, and as many received ahead of them (see
/// `WorkerSettings::concurrency`).
fn prefetch(workers: &WorkerPoolArgs) -> u16 {
    u16::try_from(workers.concurrency * 2).unwrap_or(u16::MAX)
}

async fn start_workers(
    running: &mut Running,
    backends: &Backends,
    args: &WorkerPoolArgs,
    tenants: &str,
    registry: Registry,
) -> anyhow::Result<()> {
    register_own_types(backends, &registry).await?;
    // Only the weights matter here; the limits are the api's.
    let tenant_weights = Policies::with_overrides(DefaultLimits::default(), tenants)?.weights();
    if let Some(schedule) = backends.schedule.clone() {
        let shutdown = running.shutdown.clone();
        running.tasks.spawn(async move {
            schedule.release_due(shutdown).await;
            Ok(())
        });
    }
    let pool = WorkerPool::new(
        backends.queues.clone(),
        backends.ledger.clone(),
        registry,
        backends.catalog.clone(),
        WorkerSettings {
            concurrency: args.concurrency as usize,
            tenant_share_percent: args.tenant_slot_share,
            tenant_weights,
            default_timeout: Duration::from_millis(args.job_timeout_ms),
            backoff: backends.backoff,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            queues: args.queue_choice(),
            push: Arc::new(push(args)?),
        },
    );
    let recorder = Recorder::new(
        backends.queues.clone(),
        backends.ledger.clone(),
        backends.catalog.clone(),
    );
    let rescuer = Rescuer::new(
        backends.queues.clone(),
        backends.ledger.clone(),
        backends.catalog.clone(),
        Duration::from_millis(args.rescue_every_ms),
    );
    let shutdown = running.shutdown.clone();
    running.tasks.spawn(async move {
        rescuer.run(shutdown).await;
        Ok(())
    });
    let retention = (args.job_retention_hours > 0)
        .then(|| Duration::from_secs(args.job_retention_hours * 60 * 60));
    let pruner = Pruner::new(backends.ledger.clone(), retention, PRUNE_EVERY);
    let shutdown = running.shutdown.clone();
    running.tasks.spawn(async move {
        pruner.run(shutdown).await;
        Ok(())
    });
    let shutdown = running.shutdown.clone();
    running.tasks.spawn(async move {
        recorder
            .run(shutdown)
            .await
            .context("The recorder could not start")
    });
    let shutdown = running.shutdown.clone();
    running.tasks.spawn(async move {
        pool.run(shutdown)
            .await
            .context("The worker pool could not start")
    });
    Ok(())
}

/// The sender of push deliveries, going only where `CONVEYOR_OUTBOUND_ALLOW` lets it.
fn push(args: &WorkerPoolArgs) -> anyhow::Result<Push> {
    let policy = OutboundPolicy::parse(&args.outbound_allow)?;
    Push::new(policy, args.push_max_body_bytes as usize)
        .context("Failed to build the client of push deliveries")
}

fn print_dev_banner(running: &Running, backends: &BackendArgs, secret: &str) {
    let port = running.port.unwrap_or_default();
    let token = token::mint(
        secret.as_bytes(),
        "dev",
        "dev",
        "jobs:write jobs:read events:read admin",
        chrono::Duration::days(30),
    );
    println!(
        "\nConveyor is running on http://127.0.0.1:{port} (broker {}, store {}, cache {}).\n\
         API reference: http://127.0.0.1:{port}/docs\n\n\
         A token for tenant `dev` with every scope, valid 30 days:\n\n  export TOKEN={token}\n\n\
         Submit a job and follow it:\n\n  \
         curl -si -X POST http://127.0.0.1:{port}/v1/jobs -H \"Authorization: Bearer $TOKEN\" \
         -H 'Content-Type: application/json' -d '{{\"type\":\"sleep\",\"payload\":{{\"ms\":2000}}}}'\n  \
         curl -sN http://127.0.0.1:{port}/v1/jobs/<id>/events -H \"Authorization: Bearer $TOKEN\"\n",
        redact(&backends.broker_url),
        redact(&backends.database_url),
        redact(&backends.cache_url)
    );
}
