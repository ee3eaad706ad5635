//! The one error type of the coordinator, and its single mapping to gRPC.

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("root: {0}")]
    Root(#[from] arbor_root::RootError),
    #[error("no region covers key {key:?} yet (view at cursor {cursor}); the cluster may still be bootstrapping")]
    NoRegionForKey { key: Vec<u8>, cursor: u64 },
    #[error("bad request: {hint}")]
    InvalidArgument { hint: String },
    #[error("not the lease holder: {holder_id} at {holder_address} holds generation {generation}")]
    NotLeaseHolder {
        holder_id: String,
        holder_address: String,
        generation: u64,
    },
    #[error("root did not raise the allocator fence: {detail}")]
    FenceNotRaised { detail: String },
    #[error("could not bind {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Transport(String),
    /// Work that cannot go ahead yet (no known leader, another change
    /// pending, a store not answering); asking again later may succeed.
    #[error("not ready: {hint}")]
    NotReady { hint: String },
    #[error(
        "split at {key:?} not done within {waited_ms} ms (it may still complete): {last_error}"
    )]
    SplitNotDone {
        key: Vec<u8>,
        waited_ms: u64,
        last_error: String,
    },
    #[error(
        "unsplit at {key:?} not done within {waited_ms} ms (it may still complete): {last_error}"
    )]
    MergeNotDone {
        key: Vec<u8>,
        waited_ms: u64,
        last_error: String,
    },
}

impl CoordinatorError {
    /// The single place coordinator errors become gRPC status codes.
    pub fn to_status(&self) -> tonic::Status {
        let message = self.to_string();
        match self {
            CoordinatorError::Root(_) | CoordinatorError::NoRegionForKey { .. } => {
                tonic::Status::unavailable(message)
            }
            CoordinatorError::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            // The message names the holder's address, so a client can redirect.
            CoordinatorError::NotLeaseHolder { .. } => tonic::Status::failed_precondition(message),
            CoordinatorError::FenceNotRaised { .. }
            | CoordinatorError::NotReady { .. }
            | CoordinatorError::SplitNotDone { .. }
            | CoordinatorError::MergeNotDone { .. } => tonic::Status::unavailable(message),
            CoordinatorError::Bind { .. } | CoordinatorError::Transport(_) => {
                tonic::Status::internal(message)
            }
        }
    }
}

impl From<CoordinatorError> for tonic::Status {
    fn from(error: CoordinatorError) -> Self {
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
            (
                CoordinatorError::Root(arbor_root::RootError::NoLeader { peer_id: 1 }),
                Code::Unavailable,
            ),
            (
                CoordinatorError::NoRegionForKey {
                    key: vec![1],
                    cursor: 3,
                },
                Code::Unavailable,
            ),
            (
                CoordinatorError::InvalidArgument { hint: "x".into() },
                Code::InvalidArgument,
            ),
            (
                CoordinatorError::Bind {
                    address: "a".into(),
                    source: std::io::Error::other("x"),
                },
                Code::Internal,
            ),
            (CoordinatorError::Transport("x".into()), Code::Internal),
            (
                CoordinatorError::NotLeaseHolder {
                    holder_id: "c1".into(),
                    holder_address: "a".into(),
                    generation: 2,
                },
                Code::FailedPrecondition,
            ),
            (
                CoordinatorError::FenceNotRaised { detail: "x".into() },
                Code::Unavailable,
            ),
            (
                CoordinatorError::NotReady { hint: "x".into() },
                Code::Unavailable,
            ),
            (
                CoordinatorError::SplitNotDone {
                    key: vec![1],
                    waited_ms: 5,
                    last_error: "x".into(),
                },
                Code::Unavailable,
            ),
            (
                CoordinatorError::MergeNotDone {
                    key: vec![1],
                    waited_ms: 5,
                    last_error: "x".into(),
                },
                Code::Unavailable,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.to_status().code(), code, "{error}");
        }
    }
}
