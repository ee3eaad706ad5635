//! Executor and wire tests over an in-memory versioned store with the
//! cluster's transaction semantics, and a hand-made cluster view.

mod admin;
mod arithmetic;
mod ddl;
mod expressions;
pub(crate) mod memory;
mod settings;
mod statements;
mod system;
mod transactions;
mod wire;
