//! Executor and wire tests over an in-memory store with the region
//! client's condition semantics, and a hand-made cluster view.

mod ddl;
mod memory;
mod statements;
mod system;
mod wire;
