//! The openraft type configuration of a region group and the ids the crate
//! speaks in.

use std::io::Cursor;

use crate::command::{RegionCommand, RegionResponse};

/// Identifies a region (and its raft group: `RaftPayload.group_id`).
pub type RegionId = u64;
/// Identifies a store; also the raft node id of the store's peer in every
/// region group, so one store hosts at most one peer of a region.
pub type StoreId = u64;

openraft::declare_raft_types!(
    /// Types of every region raft group.
    pub RegionTypeConfig:
        D = RegionCommand,
        R = RegionResponse,
        NodeId = StoreId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<RegionTypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type RegionRaft = openraft::Raft<RegionTypeConfig>;
