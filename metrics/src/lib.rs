//! `arbor-metrics`: Prometheus metrics for every Arbor process.
//!
//! Owns: a registry of counters, gauges and histograms with labels
//! ([`Registry`]), its rendering in the Prometheus text exposition format
//! ([`render::encode`], a pure function of snapshots), and the HTTP face:
//! `/metrics` and `/health` on a listener of their own ([`MetricsServer`])
//! or mounted on another router ([`metrics_response`], [`health_response`]).
//!
//! Never knows: any other Arbor crate (it depends on none), raft, SQL or
//! what the numbers mean; each process registers its own families and
//! copies numbers in (instrumentation at RPC handlers, scrape hooks for
//! numbers that live elsewhere, such as openraft's `RaftMetrics`).
//!
//! Invariants:
//! - Bounded: at most [`FAMILIES_MAX`] families per registry, each with at
//!   most [`LABEL_SETS_MAX`] label sets plus one overflow series, label
//!   values cut at [`LABEL_VALUE_BYTES_MAX`] bytes, at most
//!   [`HISTOGRAM_BUCKETS_MAX`] buckets per histogram.
//! - Updating a metric is one atomic operation on a handle resolved
//!   beforehand; only resolving a labelled series takes a lock.
//! - A scrape reads a consistent-enough snapshot: a histogram's `_count`
//!   always equals its `+Inf` bucket.

pub mod error;
pub mod http;
pub mod registry;
pub mod render;

pub use error::MetricsError;
pub use http::{health_response, metrics_response, Health, HealthState, MetricsServer};
pub use registry::{
    weak_hook, Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramTimer, HistogramVec,
    MetricKind, Registry, FAMILIES_MAX, HISTOGRAM_BUCKETS_MAX, LABEL_NAMES_MAX, LABEL_SETS_MAX,
    LABEL_VALUE_BYTES_MAX, LATENCY_BUCKETS_SECONDS, OVERFLOW_LABEL_VALUE,
};
pub use render::CONTENT_TYPE;
