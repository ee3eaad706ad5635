//! `arbor-root`: the truth plane.
//!
//! Owns the typed, append-only log of cluster events, replicated by three (or
//! more) peers with openraft, and the compact state applied from it: cluster
//! id, joined stores, region descriptors and the coordinator lease. Also owns
//! the `Root` gRPC service and a client for it.
//!
//! Never knows: routing, heartbeats, scheduling, SQL. It never depends on
//! another plane.
//!
//! Invariants:
//! - **The log is the truth; the applied state is derived from it.** Every
//!   peer that applies the same entries reaches the same state.
//! - **Preconditions are validated at apply time** ([`apply`]): a stale or
//!   racing proposer gets a typed [`Rejection`] and changes nothing.
//! - **Apply reads no clock.** Lease expiry uses the stamp the root leader put
//!   into the entry, kept monotonic across leader changes.
//! - **The cursor of an event is its raft log index**, identical on every peer.

pub mod apply;
pub mod client;
pub mod error;
pub mod network;
pub mod server;
pub mod service;
pub mod storage;
pub mod types;

pub use apply::{apply_command, describe_event, Rejection};
pub use client::RootClient;
pub use error::RootError;
pub use network::PeerFilter;
pub use server::{run_root, RootConfig, RootPeer};
pub use types::{Cursor, LeaseGeneration, RootTypeConfig};
