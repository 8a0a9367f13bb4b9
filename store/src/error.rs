/// Cloneable so that one failed group commit can be reported to every waiter in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    /// The database refused what it was given (a value it cannot hold, a constraint): trying
    /// again cannot help.
    #[error("the database refused the write: {0}")]
    Refused(String),
    #[error("cache error: {0}")]
    Cache(String),
    #[error("the database schema is behind: {0} migration(s) pending; run `conveyor migrate`")]
    SchemaBehind(usize),
    #[error("job {0} changed too often while being updated; try again")]
    Contended(uuid::Uuid),
    #[error("{0}")]
    Config(String),
}

impl From<sea_orm::DbErr> for StoreError {
    fn from(error: sea_orm::DbErr) -> Self {
        if refused(&error) {
            StoreError::Refused(error.to_string())
        } else {
            StoreError::Database(error.to_string())
        }
    }
}

/// Whether the database answered that it will not take the statement's data (SQLSTATE classes
/// 22, data exception, and 23, integrity constraint violation), as opposed to not answering.
fn refused(error: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx};
    match error {
        DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::Database(answer)))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::Database(answer))) => answer
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}
