//! `arbor-coordinator`: the control plane.
//!
//! Owns the coordinator lease (who performs singleton duties), the cluster
//! view (root state plus store heartbeats), routing answers and the
//! cluster-view RPC behind the system tables.
//!
//! Never knows: regions' data, SQL, or any disk. It never depends on
//! `raftstore` or `sql-gateway`.
//!
//! Invariants:
//! - **A coordinator has no durable state.** Everything it knows is rebuilt
//!   from root (`ReadState` then `Watch`) plus heartbeats, which are view
//!   only and never written to root.
//! - **Singleton duties run only while the local lease deadline holds**: the
//!   deadline is measured from when the grant/renewal was *sent*, minus a
//!   clock-skew margin, so a holder stops before root could let a successor
//!   in ([`lease`]).
//! - **Every answer carries the root cursor its view reflects.**

pub mod allocator;
pub mod error;
pub mod gc;
pub mod lease;
pub mod merge;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod singleton;
pub mod split_at;
pub mod unsplit_at;
pub mod view;

pub use error::CoordinatorError;
pub use server::{run_coordinator, CoordinatorConfig};
