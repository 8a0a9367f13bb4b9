use std::time::Duration;

use conveyor_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    pub fn of(url: &str) -> Result<DatabaseKind, StoreError> {
        match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Ok(DatabaseKind::Sqlite),
            Some("postgres" | "postgresql") => Ok(DatabaseKind::Postgres),
            _ => Err(StoreError::Config(format!(
                "CONVEYOR_DATABASE_URL `{}` is neither sqlite:// nor postgres://",
                redact(url)
            ))),
        }
    }
}

/// The database, with reads optionally sent to a replica.
#[derive(Clone)]
pub struct Database {
    pub kind: DatabaseKind,
    pub write: DatabaseConnection,
    pub read: DatabaseConnection,
    schema: Option<String>,
}

impl Database {
    /// Opens the database at `url`, reading from `read_url` when given. On PostgreSQL, `schema`
    /// names the schema Conveyor's tables live in (`public` when `None`), so that deployments and
    /// tests can share one database.
    pub async fn connect(
        url: &str,
        read_url: Option<&str>,
        schema: Option<&str>,
    ) -> Result<Database, StoreError> {
        let kind = DatabaseKind::of(url)?;
        let schema = match (schema, kind) {
            (Some(schema), DatabaseKind::Postgres) => Some(valid_schema(schema)?),
            (Some(_), DatabaseKind::Sqlite) => {
                return Err(StoreError::Config(
                    "CONVEYOR_DATABASE_SCHEMA applies to PostgreSQL only".into(),
                ));
            }
            (None, _) => None,
        };
        let write = open(url, kind, Pool::Write, schema).await?;
        let read = match (read_url, kind) {
            (Some(read_url), _) => {
                open(read_url, DatabaseKind::of(read_url)?, Pool::Read, schema).await?
            }
            (None, DatabaseKind::Sqlite) => open(url, kind, Pool::Read, None).await?,
            (None, DatabaseKind::Postgres) => write.clone(),
        };
        Ok(Database {
            kind,
            write,
            read,
            schema: schema.map(str::to_owned),
        })
    }

    /// Brings the schema up to date, creating the PostgreSQL schema first if it is named and new.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        if let Some(schema) = &self.schema {
            self.write
                .execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await?;
        }
        Migrator::up(&self.write, None).await?;
        Ok(())
    }

    /// Refuses a schema that is behind this build, so an old database is never written to by new
    /// code (or the other way round) by mistake.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        if let Some(schema) = &self.schema
            && !self.schema_exists(schema).await?
        {
            return Err(StoreError::SchemaBehind(Migrator::migrations().len()));
        }
        let pending = Migrator::get_pending_migrations(&self.write).await?.len();
        if pending > 0 {
            return Err(StoreError::SchemaBehind(pending));
        }
        Ok(())
    }

    async fn schema_exists(&self, schema: &str) -> Result<bool, StoreError> {
        let found = self
            .write
            .query_one(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT 1 AS found FROM pg_namespace WHERE nspname = $1",
                [schema.into()],
            ))
            .await?;
        Ok(found.is_some())
    }

    /// Both the primary and, when there is one, the read replica.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.write.ping().await?;
        self.read.ping().await?;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    Write,
    Read,
}

/// A schema name safe to put in SQL: letters, digits and `_`, not starting with a digit.
fn valid_schema(schema: &str) -> Result<&str, StoreError> {
    let mut chars = schema.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if starts_well && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && schema.len() <= 63 {
        Ok(schema)
    } else {
        Err(StoreError::Config(format!(
            "CONVEYOR_DATABASE_SCHEMA `{schema}` must be letters, digits and `_` (at most 63)"
        )))
    }
}

async fn open(
    url: &str,
    kind: DatabaseKind,
    pool: Pool,
    schema: Option<&str>,
) -> Result<DatabaseConnection, StoreError> {
    let mut options = ConnectOptions::new(url.to_owned());
    if let Some(schema) = schema {
        options.set_schema_search_path(schema);
    }
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10));
    if kind == DatabaseKind::Sqlite {
        // WAL lets readers run beside the one writer; NORMAL sync keeps every commit across a
        // process crash (only an OS crash can lose the last ones), which is the embedded promise.
        // SQLite takes one writer at a time; more write connections would only wait on its lock
        // in sleeping busy handlers. One write connection makes writers queue in the pool instead.
        let connections = if pool == Pool::Write { 1 } else { 4 };
        options
            .max_connections(connections)
            .map_sqlx_sqlite_opts(|sqlite| {
                sqlite
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .create_if_missing(true)
            });
    } else {
        options.max_connections(16);
    }
    sea_orm::Database::connect(options).await.map_err(|error| {
        StoreError::Database(format!("cannot connect to {}: {error}", redact(url)))
    })
}

/// The URL without its password (in its user info, or as a `password=` parameter), for messages
/// and banners.
pub fn redact(url: &str) -> String {
    let (address, query) = match url.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (url, None),
    };
    let mut redacted = match (address.find("://"), address.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &address[scheme_end + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}://{user}:***{}", &address[..scheme_end], &address[at..])
        }
        _ => address.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                    format!("{name}=***")
                }
                _ => param.to_owned(),
            })
            .collect();
        redacted = format!("{redacted}?{}", params.join("&"));
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/conveyor"),
            "postgres://app:***@db:5432/conveyor"
        );
        assert_eq!(redact("sqlite://conveyor.db"), "sqlite://conveyor.db");
        assert_eq!(
            redact("redis://:s3cret@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact("postgres://db/c?sslmode=require&password=s3cret"),
            "postgres://db/c?sslmode=require&password=***"
        );
    }

    #[test]
    fn the_scheme_picks_the_database() {
        assert_eq!(
            DatabaseKind::of("sqlite://x.db?mode=rwc").unwrap(),
            DatabaseKind::Sqlite
        );
        assert_eq!(
            DatabaseKind::of("postgres://localhost/test").unwrap(),
            DatabaseKind::Postgres
        );
        assert!(DatabaseKind::of("mysql://localhost").is_err());
    }
}
