//! The one error type of the root crate, and its single mapping to gRPC.

use crate::types::RootPeerId;

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("root storage at {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: rocksdb::Error,
    },
    #[error("root data corrupt ({context}): {hint}")]
    Corrupt { context: &'static str, hint: String },
    #[error("raft: {0}")]
    Raft(String),
    #[error("no root leader known right now (asked peer {peer_id}); retry shortly")]
    NoLeader { peer_id: RootPeerId },
    #[error("no root peer reachable at {addresses:?}: {last_error}")]
    Unreachable {
        addresses: Vec<String>,
        last_error: String,
    },
    #[error("bad request: {hint}")]
    InvalidArgument { hint: String },
    #[error("could not bind {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Transport(String),
    #[error("raft message for root peer {addressed} reached peer {actual} (the address now belongs to another peer); refused")]
    WrongPeer {
        addressed: RootPeerId,
        actual: RootPeerId,
    },
}

impl RootError {
    /// The single place root errors become gRPC status codes.
    pub fn to_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            RootError::NoLeader { .. } | RootError::Unreachable { .. } => {
                tonic::Status::unavailable(message)
            }
            RootError::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            RootError::Corrupt { .. } => tonic::Status::data_loss(message),
            RootError::WrongPeer { .. } => tonic::Status::failed_precondition(message),
            RootError::Storage { .. }
            | RootError::Raft(_)
            | RootError::Bind { .. }
            | RootError::Transport(_) => tonic::Status::internal(message),
        }
    }
}

impl From<RootError> for tonic::Status {
    fn from(error: RootError) -> Self {
        error.to_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_variant_maps_to_a_status() {
        let cases = [
            (RootError::NoLeader { peer_id: 1 }, Code::Unavailable),
            (
                RootError::Unreachable {
                    addresses: vec![],
                    last_error: "x".into(),
                },
                Code::Unavailable,
            ),
            (
                RootError::InvalidArgument { hint: "x".into() },
                Code::InvalidArgument,
            ),
            (
                RootError::Corrupt {
                    context: "x",
                    hint: "y".into(),
                },
                Code::DataLoss,
            ),
            (RootError::Raft("x".into()), Code::Internal),
            (
                RootError::Bind {
                    address: "a".into(),
                    source: std::io::Error::other("x"),
                },
                Code::Internal,
            ),
            (RootError::Transport("x".into()), Code::Internal),
            (
                RootError::WrongPeer {
                    addressed: 1,
                    actual: 2,
                },
                Code::FailedPrecondition,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.to_status().code(), code, "{error}");
        }
    }
}
