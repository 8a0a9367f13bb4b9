//! A connection to RabbitMQ that is opened again when found closed.
//!
//! lapin can recover connections by itself, but then a `publish` against a stopped broker waits
//! through its retries. Here nothing waits in the background: the call that finds the
//! connection closed opens a new one, within [`CONNECT_TIMEOUT`], or fails with the reason.
//! Every step is bounded, so that no caller hangs on a broker that stopped answering.

use std::sync::Arc;
use std::time::Duration;

use conveyor_events::BrokerError;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::{Mutex, MutexGuard};

use crate::topology::{Declaration, Declared};
use crate::unavailable;

/// How long connecting may take, waiting for another caller's attempt included: a `publish`
/// against an unreachable broker fails within about this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long declaring the topology may take on a new connection: creating quorum queues on a
/// busy broker takes a while, and a broker that answers is not down.
const DECLARE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Link {
    uri: AMQPUri,
    /// `host:port`, for messages: never the credentials.
    address: String,
    /// What the connection is for, shown in RabbitMQ's connection list.
    role: &'static str,
    declared: Arc<Declared>,
    /// The open connection, if any. Held while connecting, so that callers finding the
    /// connection closed wait for one new connection instead of each opening their own.
    current: Mutex<Option<Connection>>,
}

impl Link {
    pub(crate) fn new(uri: AMQPUri, role: &'static str, declared: Arc<Declared>) -> Link {
        let address = format!("{}:{}", uri.authority.host, uri.authority.port);
        Link {
            uri,
            address,
            role,
            declared,
            current: Mutex::new(None),
        }
    }

    /// Opens the connection, and declares the topology on it, unless it is open.
    pub(crate) async fn open(&self) -> Result<(), BrokerError> {
        let mut current = self.lock().await?;
        self.live(&mut current).await.map(drop)
    }

    /// A new channel, on a new connection if the last one closed.
    pub(crate) async fn channel(&self) -> Result<Channel, BrokerError> {
        let mut current = self.lock().await?;
        let connection = self.live(&mut current).await?;
        self.open_channel(connection).await
    }

    /// Whether the connection is open (opening it if it is not) and RabbitMQ takes messages on
    /// it: a resource alarm (memory or disk) blocks publishers.
    pub(crate) async fn ready(&self) -> Result<(), BrokerError> {
        let mut current = self.lock().await?;
        let connection = self.live(&mut current).await?;
        if connection.status().blocked() {
            return Err(unavailable(format!(
                "{} blocks publishers (a memory or disk alarm)",
                self.address
            )));
        }
        Ok(())
    }

    /// The connection slot, once no other caller is connecting.
    async fn lock(&self) -> Result<MutexGuard<'_, Option<Connection>>, BrokerError> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.current.lock())
            .await
            .map_err(|_| {
                unavailable(format!(
                    "still connecting to {} after {} s",
                    self.address,
                    CONNECT_TIMEOUT.as_secs()
                ))
            })
    }

    /// The open connection, replacing a closed one.
    async fn live<'a>(
        &self,
        current: &'a mut Option<Connection>,
    ) -> Result<&'a Connection, BrokerError> {
        let connection = match current.take() {
            Some(connection) if connection.status().connected() => connection,
            Some(_closed) => {
                tracing::warn!(
                    address = %self.address,
                    role = self.role,
                    "The RabbitMQ connection closed; opening a new one."
                );
                self.connect().await?
            }
            None => self.connect().await?,
        };
        Ok(current.insert(connection))
    }

    /// Connects and declares the topology: a broker restarted without its definitions (a new
    /// node, a wiped volume) gets them back before anything is published to it.
    async fn connect(&self) -> Result<Connection, BrokerError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("conveyor {}", self.role).into());
        let connecting = async {
            Connection::connect_uri(self.uri.clone(), properties)
                .await
                .map_err(|error| {
                    unavailable(format!("could not connect to {}: {error}", self.address))
                })
        };
        let connection = within(CONNECT_TIMEOUT, &self.address, connecting).await?;
        self.declare_on(&connection, &self.declared.current())
            .await?;
        tracing::info!(
            address = %self.address,
            vhost = %self.uri.vhost,
            role = self.role,
            "Connected to RabbitMQ."
        );
        Ok(connection)
    }

    /// Declares `topology` on the open connection (opening it if need be), and keeps it, to be
    /// declared again on every new connection.
    pub(crate) async fn declare(
        &self,
        topology: &conveyor_events::Topology,
    ) -> Result<(), BrokerError> {
        let declaration = self.declared.add(topology)?;
        let mut current = self.lock().await?;
        let connection = self.live(&mut current).await?;
        self.declare_on(connection, &declaration).await
    }

    async fn declare_on(
        &self,
        connection: &Connection,
        declaration: &Declaration,
    ) -> Result<(), BrokerError> {
        let channel = self.open_channel(connection).await?;
        within(
            DECLARE_TIMEOUT,
            &self.address,
            declaration.declare(&channel),
        )
        .await?;
        // Dropping the channel would close it too, but without waiting for RabbitMQ's answer.
        if let Err(error) = channel.close(200, "declared".into()).await {
            tracing::debug!(%error, "Could not close the channel that declared the topology.");
        }
        Ok(())
    }

    async fn open_channel(&self, connection: &Connection) -> Result<Channel, BrokerError> {
        let opening = async {
            connection.create_channel().await.map_err(|error| {
                unavailable(format!(
                    "could not open a channel on {}: {error}",
                    self.address
                ))
            })
        };
        within(CONNECT_TIMEOUT, &self.address, opening).await
    }
}

/// `step`, or `Unavailable` once it has taken longer than `limit`: a broker that stopped
/// answering without closing the connection would otherwise hold the caller until the heartbeat
/// gives up.
async fn within<T>(
    limit: Duration,
    address: &str,
    step: impl Future<Output = Result<T, BrokerError>>,
) -> Result<T, BrokerError> {
    tokio::time::timeout(limit, step).await.unwrap_or_else(|_| {
        Err(unavailable(format!(
            "no answer from {address} within {} s",
            limit.as_secs()
        )))
    })
}
