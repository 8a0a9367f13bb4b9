//! The `conveyor` command line as a function: what `conveyor` runs, and what a worker binary of
//! one's own runs with its handlers (see `examples/rust-worker`).

use clap::Parser;
use conveyor_workers::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::{Cli, start_with};

/// Parses the command line (and `CONVEYOR_*`), sets up logging, and runs what it asks for with the
/// handlers of `registry` until SIGINT or SIGTERM.
pub async fn run(registry: Registry) -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("CONVEYOR_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    raise_open_files_limit();
    let running = start_with(cli.command, registry).await?;
    let shutdown = running.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown requested; draining.");
        shutdown.cancel();
    });
    running.wait().await
}

/// Lets the process open as many files as the system allows it, not the lower soft limit (often
/// 1,024): each HTTP connection takes a descriptor, and a second one while it may wait (see
/// `conveyor_api`'s hang-up watch), so thousands of long-polls and streams need them.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let before = limit.current;
        limit.current = limit.maximum;
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => {
                tracing::debug!(?before, now = ?limit.current, "Raised the open files limit.")
            }
            Err(error) => tracing::warn!(%error, "Could not raise the open files limit."),
        }
    }
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be watched");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
