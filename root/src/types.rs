//! The openraft type configuration of root and the newtypes root speaks in.

use std::io::Cursor as IoCursor;

use serde::{Deserialize, Serialize};

/// Position of an event in the root log: its raft log index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor(pub u64);

/// Generation of the coordinator lease; every takeover bumps it by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LeaseGeneration(pub u64);

/// Identifies a root peer (the openraft node id).
pub type RootPeerId = u64;

/// What a raft entry of root carries: one prost-encoded
/// [`arbor_proto::RootCommand`]. Keeping the proto encoding (rather than a
/// serde struct) means old logs decode with new code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRequest {
    pub command: Vec<u8>,
}

/// The answer of applying one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RootResponse {
    pub accepted: bool,
    /// `arbor_proto::RejectionCode` as i32 when not accepted.
    pub rejection_code: i32,
    pub rejection_detail: String,
}

openraft::declare_raft_types!(
    /// Types of the root raft group.
    pub RootTypeConfig:
        D = RootRequest,
        R = RootResponse,
        NodeId = RootPeerId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<RootTypeConfig>,
        SnapshotData = IoCursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type RootRaft = openraft::Raft<RootTypeConfig>;
