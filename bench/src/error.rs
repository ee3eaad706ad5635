//! The benchmark driver's one error type: each variant has a stable id
//! (`bench-E…`) and says what to check.

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("[bench-E1] could not start {what}: {source}. Hint: is it installed? `bash scripts/setup.sh --bench` installs etcd-server and postgresql")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("[bench-E2] {what} did not become ready within {seconds} s: {last_error}. Hint: its log is {log}")]
    NotReady {
        what: String,
        seconds: u64,
        last_error: String,
        log: String,
    },
    #[error("[bench-E3] {what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("[bench-E4] file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("[bench-E5] SQL on {target}: {detail}")]
    Sql { target: String, detail: String },
    #[error("[bench-E6] {what}: {detail}")]
    Cluster { what: String, detail: String },
    #[error("[bench-E7] interrupted (Ctrl-C or SIGTERM); everything started was stopped")]
    Interrupted,
}

impl BenchError {
    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.to_string(),
            source,
        }
    }

    pub fn cluster(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        BenchError::Cluster {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    pub fn sql(target: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        BenchError::Sql {
            target: target.into(),
            detail: detail.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, BenchError>;
