//! The HTTP API: routes, authentication, problem responses, HTTP caching, long-poll and SSE.
//! Business rules live in the services it calls; this crate is the only one that knows actix-web.

mod auth;
mod claims;
mod gate;
mod hang_up;
mod input_limits;
mod metrics;
mod openapi;
mod problem;
mod readiness;
mod routes;
mod service;
mod sse;
mod tenants;
mod type_registry;
mod waits;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::error::JsonPayloadError;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use conveyor_events::Queues;
use conveyor_schemas::Backoff;
use conveyor_store::{Database, Ledger, LiveCatalog, RateLimiter};

pub use auth::{AuthSettings, Authenticator, JwksError, JwksSettings, Secret};
pub use input_limits::InputLimits;
pub use openapi::ApiDoc;
pub use problem::{ApiError, Problem};
pub use tenants::{DefaultLimits, Policies, PolicyError};

use crate::claims::ClaimService;
use crate::readiness::Readiness;
use crate::service::{JobService, JobServiceSettings};
use crate::type_registry::TypeRegistry;
use crate::waits::OpenWaits;

#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Who may call `/v1`.
    pub authenticator: Authenticator,
    /// Largest request body accepted; larger ones get `413`.
    pub max_body_bytes: usize,
    /// Cap on `?wait=` long-polls.
    pub max_wait: Duration,
    pub default_max_attempts: u32,
    /// Between attempts of a job whose HTTP worker failed it, when its type names no backoff.
    pub backoff: Backoff,
    /// A tenant's new jobs beyond this many unfinished take the backlog lane; `None`: never.
    pub backlog_after: Option<u32>,
    /// HTTP worker threads; 0 for one per core.
    pub http_workers: usize,
    /// Each tenant's rate limits, quota of unfinished jobs and allowed job types.
    pub policies: Policies,
    /// Event streams a tenant may hold open on one server.
    pub max_streams_per_tenant: usize,
    /// Long-polls (`?wait=`) a tenant may have waiting on one server.
    pub max_long_polls_per_tenant: usize,
    pub input: InputLimits,
}

/// What the API talks to.
#[derive(Clone)]
pub struct ApiDependencies {
    /// The broker, by queue.
    pub queues: Arc<Queues>,
    pub ledger: Ledger,
    pub database: Database,
    /// The job types, following the store.
    pub catalog: Arc<LiveCatalog>,
    /// Shared by the replicas when the cache is Redis.
    pub rate_limiter: Arc<dyn RateLimiter>,
}

/// A bound, not yet awaited, API server.
pub struct Api {
    server: Server,
    port: u16,
}

impl Api {
    /// Binds `listen` (port 0 picks a free port) and builds the server; await [`Api::server`] to
    /// run it.
    pub fn bind(
        listen: &str,
        dependencies: ApiDependencies,
        settings: ApiSettings,
    ) -> std::io::Result<Api> {
        let listener = TcpListener::bind(listen)?;
        let port = listener.local_addr()?.port();
        let service = web::Data::new(JobService::new(
            dependencies.queues.clone(),
            dependencies.ledger.clone(),
            dependencies.catalog.clone(),
            JobServiceSettings {
                default_max_attempts: settings.default_max_attempts,
                backlog_after: settings.backlog_after,
            },
        ));
        let registry = web::Data::new(TypeRegistry::new(
            dependencies.catalog.clone(),
            dependencies.ledger.clone(),
            dependencies.queues.clone(),
        ));
        let claims = web::Data::new(ClaimService::new(
            dependencies.ledger.clone(),
            dependencies.catalog.clone(),
            dependencies.queues.clone(),
            settings.backoff,
        ));
        let readiness = web::Data::new(Readiness::new(&dependencies));
        let authenticator = web::Data::new(settings.authenticator.clone());
        let policies = web::Data::new(settings.policies.clone());
        let rate_limiter = web::Data::from(dependencies.rate_limiter);
        let input = web::Data::new(settings.input);
        let waits = web::Data::new(OpenWaits::default());
        let max_body = settings.max_body_bytes;
        let http_workers = settings.http_workers;
        let client_timeout = settings.input.client_timeout;
        let settings = web::Data::new(settings);
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(input_limits::guard))
                .wrap(from_fn(metrics::observe))
                .app_data(json_config(max_body, client_timeout))
                .app_data(service.clone())
                .app_data(registry.clone())
                .app_data(claims.clone())
                .app_data(readiness.clone())
                .app_data(authenticator.clone())
                .app_data(policies.clone())
                .app_data(rate_limiter.clone())
                .app_data(input.clone())
                .app_data(waits.clone())
                .app_data(settings.clone())
                .configure(routes::configure)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::RouteNotFound)
                }))
        })
        .on_connect(hang_up::remember_socket)
        .disable_signals()
        .shutdown_timeout(10)
        .client_request_timeout(client_timeout)
        .listen(listener)?;
        if http_workers > 0 {
            server = server.workers(http_workers);
        }
        Ok(Api {
            server: server.run(),
            port,
        })
    }

    /// Binds a server of `/healthz`, `/readyz` and `/metrics` alone: what a worker process shows
    /// operators and Prometheus.
    pub fn bind_operations(listen: &str, dependencies: ApiDependencies) -> std::io::Result<Api> {
        let listener = TcpListener::bind(listen)?;
        let port = listener.local_addr()?.port();
        let readiness = web::Data::new(Readiness::new(&dependencies));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(readiness.clone())
                .configure(routes::configure_operations)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(ApiError::RouteNotFound)
                }))
        })
        .on_connect(hang_up::remember_socket)
        .disable_signals()
        .workers(1)
        .listen(listener)?;
        Ok(Api {
            server: server.run(),
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server when asked.
    pub fn handle(&self) -> ApiHandle {
        ApiHandle(self.server.handle())
    }

    /// Serves until stopped through an [`ApiHandle`].
    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Stops a running [`Api`].
#[derive(Clone)]
pub struct ApiHandle(ServerHandle);

impl ApiHandle {
    /// Stops taking connections and lets the requests in flight finish.
    pub async fn stop(&self) {
        self.0.stop(true).await;
    }
}

/// Body errors as problems: too large `413`, not JSON `415`, unparseable `400`, too slow `408`.
fn json_config(limit: usize, timeout: Duration) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .content_type(|mime| {
            mime.type_() == "application"
                && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
        })
        .error_handler(move |error, _| {
            match error {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => ApiError::PayloadTooLarge { limit },
                JsonPayloadError::Payload(actix_web::error::PayloadError::Overflow) => {
                    ApiError::PayloadTooLarge { limit }
                }
                JsonPayloadError::Payload(error) if input_limits::is_deadline(&error) => {
                    ApiError::RequestTimeout(timeout.as_secs())
                }
                JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
                other => ApiError::MalformedJson(other.to_string()),
            }
            .into()
        })
}
