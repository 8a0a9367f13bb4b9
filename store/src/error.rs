/// Cloneable so that one failed group commit can be reported to every waiter in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
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
        StoreError::Database(error.to_string())
    }
}
