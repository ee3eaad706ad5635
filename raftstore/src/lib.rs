//! `arbor-raftstore`: the execution plane of Arbor.
//!
//! **Owns:** regions — key ranges `[start, end)`, each replicated by its own
//! openraft group whose peers live on different stores — and the store
//! process that hosts many of them on one RocksDB: raft log and state machine
//! storage ([`storage`], layouts in [`keys`]), the raft transport
//! ([`network`]), the `Store`/`StoreRaft` gRPC services ([`service`]), the
//! coordinator heartbeat ([`heartbeat`]) and the process driver
//! ([`server::run_store`]). It also owns the **region client**
//! ([`client::RegionClient`]) the SQL gateway reads and writes through.
//!
//! **Never knows:** SQL, the catalog, tables, rows or key encodings above raw
//! bytes; cluster topology truth (root decides which regions a store hosts;
//! a store learns it from coordinator heartbeats and never invents a region).
//!
//! **Invariants:**
//! - A write batch is one raft entry, applied all-or-nothing together with
//!   its applied log id in one RocksDB write batch; conditions are checked at
//!   apply time ([`operation::apply::decide`], a pure function).
//! - Raft log appends and votes are synced before openraft is told they are
//!   durable; a restart on the same data directory keeps every region.
//! - Reads are linearizable: a raft read barrier precedes every read, and the
//!   region's epoch is checked again after it.
//! - A split is a raft admin command of the parent region
//!   ([`operation::split`], decided by the pure [`operation::split::decide_split`]):
//!   every replica shrinks the parent, persists the new region and its initial
//!   raft state in one write batch, then starts the new group; a batch admitted
//!   before a split that applies after it is refused whole.
//! - A region's descriptor changes only through its own raft apply; a store
//!   starts a coordinator-assigned region only when it overlaps no local one,
//!   and never drops a region because a coordinator does not list it.
//! - A store answers region errors (`NotLeader`, `EpochNotMatch`,
//!   `KeyNotInRegion`, `RegionNotFound`, `ServerBusy`) in the response rather
//!   than guessing; gRPC statuses mean transport or bad input only.
//! - Every size, batch, scan and queue is capped by a named constant
//!   ([`config`]).
//!
//! Layout follows TiKV raftstore-v2 by role: [`store`] routes by region id,
//! [`peer`] holds a region's state and raft handle, [`operation`] has one
//! module per behaviour (apply, read, write, split).

pub mod client;
pub mod command;
pub mod config;
pub mod error;
pub mod heartbeat;
pub mod keys;
pub mod network;
pub mod operation;
pub mod peer;
pub mod server;
pub mod service;
pub mod storage;
pub mod store;
pub mod types;

#[cfg(test)]
mod cluster_tests;

pub use client::{RegionClient, WriteOutcome};
pub use error::RaftstoreError;
pub use server::{run_store, StoreConfig};
