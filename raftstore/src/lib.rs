//! `arbor-raftstore`: the execution plane of Arbor.
//!
//! **Owns:** regions — key ranges `[start, end)`, each replicated by its own
//! openraft group whose peers live on different stores — and the store
//! process that hosts many of them on one RocksDB: raft log and state machine
//! storage ([`storage`], layouts in [`keys`]), the multi-version data and
//! the Percolator transaction rules over it ([`txn`]), the raft transport
//! ([`network`]), the `Store`/`StoreRaft` gRPC services ([`service`]), the
//! coordinator heartbeat ([`heartbeat`]) and the process driver
//! ([`server::run_store`]). It also owns the **region client**
//! ([`client::RegionClient`]) the SQL gateway reads and writes through,
//! with its timestamp oracle client ([`tso`]).
//!
//! **Never knows:** SQL, the catalog, tables, rows or key encodings above raw
//! bytes; cluster topology truth (root decides which regions a store hosts;
//! a store learns it from coordinator heartbeats and never invents a region).
//!
//! **Data layout (MVCC, store format 2):** column family `lock` maps a user
//! key to the lock a transaction holds on it (primary key, start_ts, TTL,
//! kind Put/Delete/Lock, value); column family `write` maps
//! `memcomparable(user key) | !commit_ts` to a write record (Put with its
//! value inline, Delete, Rollback at `commit_ts == start_ts`, or Lock), each
//! naming its transaction's start_ts — so one key's versions sort newest
//! first. A store of another format is refused at open, naming its
//! directory. Timestamps are hybrid (`physical_ms << 18 | logical`) from
//! the coordinators' TSO.
//!
//! **Transactions (Percolator):** prewrite locks every key at `start_ts`
//! (refused on another transaction's lock, on a write committed at or after
//! `start_ts` — first committer wins — on the transaction's own rollback, or
//! on a failed condition); commit turns the primary's lock into a write
//! record at `commit_ts` (the commit point), then the secondaries'; readers
//! that meet a lock ask the primary (`CheckTxnStatus`, which rolls back a
//! lock past its TTL) and resolve the lock before reading again. A
//! transaction inside one region commits in one entry (one-phase commit)
//! at a `commit_ts` the leader fetches after taking memory locks on its keys
//! ([`memory_lock`]), so no reader above it sees the old value and then the
//! new one.
//!
//! **Invariants:**
//! - Every transaction decision is a pure function of the keys' lock and
//!   write records and the command ([`txn::decide`]); one raft entry per
//!   command, applied all-or-nothing together with its applied log id in
//!   one RocksDB write batch. Every command is idempotent for its start_ts.
//! - Raft log appends and votes are synced before openraft is told they are
//!   durable; a restart on the same data directory keeps every region.
//! - Reads are linearizable and at a timestamp: a raft read barrier precedes
//!   every read, the region's epoch is checked again after it, and locks are
//!   read before data.
//! - A split is a raft admin command of the parent region
//!   ([`operation::split`], decided by the pure [`operation::split::decide_split`]):
//!   every replica shrinks the parent, persists the new region and its initial
//!   raft state in one write batch, then starts the new group; a command
//!   admitted before a split that applies after it is refused whole. Data
//!   never moves: both column families are keyed by (encoded) user key.
//! - A region's descriptor changes only through its own raft apply; a store
//!   starts a coordinator-assigned region only when it overlaps no local one,
//!   and never drops a region because a coordinator does not list it.
//! - A peer change ([`operation::conf_change`], decided by the pure
//!   [`operation::conf_change::decide_request`] and
//!   [`operation::conf_change::decide_apply`]) adds each new replica as a
//!   learner that starts from a snapshot (never by replaying a log of older
//!   epochs), changes the voters by openraft's joint consensus, and only
//!   then changes the descriptor (peers, `conf_ver` + 1) by an admin
//!   command whose apply checks the epoch and that the applied membership
//!   is uniform with exactly those stores as voters. It is idempotent: a
//!   change in effect answers OK at any epoch.
//! - A replica created for a peer change (`StoreRaft.OpenPeer`, or a
//!   heartbeat naming a region past its bootstrap `conf_ver`) is never
//!   `Raft::initialize`d: it gets its state only from raft
//!   ([`peer::must_initialize`]).
//! - A removed replica (`StoreRaft.DestroyPeer`) loses its raft log, state,
//!   descriptor and data range in one batch that writes its tombstone; no
//!   heartbeat at that `conf_ver` or older, no raft message and no late
//!   `OpenPeer` of an older configuration brings it back.
//! - A merge ([`operation::merge`], decided by the pure
//!   [`operation::merge::decide_prepare`] and
//!   [`operation::merge::decide_commit`]) of two adjacent regions on the
//!   same stores moves no data. A PrepareMerge entry freezes the source
//!   (its merge state lands in the batch of its applied state and travels
//!   in its snapshots): from it on the source applies every command as a
//!   refusal that writes only its applied index and answers
//!   `RegionMerging`. A CommitMerge entry in the target waits until the
//!   local source replica applied the PrepareMerge, then in one batch grows
//!   the target (version = max + 1, as root computes it) and replaces the
//!   source's descriptor, log and state by a tombstone and a merged record;
//!   the store then stops the source's group.
//! - A leader transfer ([`operation::transfer_leader`]) asks the target to
//!   campaign only once it matched the leader's last log index; openraft's
//!   leader lease, not a special vote, decides when the old leader grants.
//! - A store answers region errors (`NotLeader`, `EpochNotMatch`,
//!   `KeyNotInRegion`, `RegionNotFound`, `ServerBusy`, `RegionMerging`) in
//!   the response rather
//!   than guessing; gRPC statuses mean transport or bad input only.
//! - Every size, batch, scan, queue and lock TTL is capped by a named
//!   constant ([`config`]).
//!
//! Layout follows TiKV raftstore-v2 by role: [`store`] routes by region id,
//! [`peer`] holds a region's state and raft handle, [`operation`] has one
//! module per behaviour (apply, read, txn, split, merge, conf_change,
//! transfer_leader, replica), [`txn`] one file per transaction command.

pub mod client;
pub mod command;
pub mod config;
pub mod error;
pub mod heartbeat;
pub mod hibernate;
pub mod keys;
pub mod liveness;
pub mod memory_lock;
pub mod network;
pub mod operation;
pub mod peer;
pub mod periodic;
pub mod server;
pub mod service;
pub mod storage;
pub mod store;
pub mod traffic;
pub mod tso;
pub mod txn;
pub mod types;

#[cfg(test)]
mod cluster_tests;

pub use client::{RegionClient, TxnKeepAlive, TxnMutation, TxnMutationKind, WriteOutcome};
pub use error::RaftstoreError;
pub use server::{run_store, StoreConfig};
