use crate::Revision;

/// Everything that can go wrong in a store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} is at revision {actual}, not {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted (oldest available is after {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("sqlite error on {path}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("etcd at {endpoint}: {message}")]
    Etcd { endpoint: String, message: String },
    #[error("cannot restrict access to {path}")]
    Permissions {
        path: String,
        source: std::io::Error,
    },
    #[error("storage task failed")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
