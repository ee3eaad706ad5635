//! The one error type of this crate: registration mistakes. Every one is a
//! programming error at a call site with a static name, so callers register
//! once at start-up, where a unit test constructs the same families.

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metric name {name:?} is invalid (hint: [a-zA-Z_:][a-zA-Z0-9_:]*)")]
    InvalidName { name: String },
    #[error("metric {name}: label name {label:?} is invalid (hint: [a-zA-Z_][a-zA-Z0-9_]*, not __*, not le on a histogram)")]
    InvalidLabelName { name: String, label: String },
    #[error("metric {name}: more than {limit} label names")]
    TooManyLabelNames { name: String, limit: usize },
    #[error("metric {name} is registered twice (hint: register each family once per registry)")]
    Duplicate { name: String },
    #[error("more than {limit} metric families in one registry")]
    TooManyFamilies { limit: usize },
    #[error("more than {limit} scrape hooks in one registry")]
    TooManyHooks { limit: usize },
    #[error("histogram {name}: {hint}")]
    InvalidBuckets { name: String, hint: String },
}
