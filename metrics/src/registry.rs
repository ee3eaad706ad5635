//! The registry: named families of counters, gauges and histograms, each
//! with fixed label names and a capped number of label sets.
//!
//! Invariant: a family never holds more than [`LABEL_SETS_MAX`] label sets
//! plus one overflow series; a label set past the cap is counted in the
//! overflow series (every label value [`OVERFLOW_LABEL_VALUE`]), so a bad
//! label (a user-controlled string, say) cannot grow memory without bound
//! and no increment is lost.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::error::MetricsError;

/// Families one registry holds.
pub const FAMILIES_MAX: usize = 256;
/// Label sets (series) one family holds before new ones go to the overflow
/// series.
pub const LABEL_SETS_MAX: usize = 64;
/// Label names one family may declare.
pub const LABEL_NAMES_MAX: usize = 4;
/// Longer label values are cut (at a character boundary) to this many bytes.
pub const LABEL_VALUE_BYTES_MAX: usize = 64;
/// Upper bounds one histogram may declare (`+Inf` comes on top).
pub const HISTOGRAM_BUCKETS_MAX: usize = 32;
/// Hooks run before each scrape (to read gauges from their source).
pub const SCRAPE_HOOKS_MAX: usize = 16;
/// Label value of the series that collects label sets past the cap.
pub const OVERFLOW_LABEL_VALUE: &str = "_overflow";

/// Latency buckets in seconds, from half a millisecond (a local read) to ten
/// seconds (an RPC deadline): the buckets every Arbor latency histogram uses,
/// so dashboards can compare them.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const _: () = assert!(LATENCY_BUCKETS_SECONDS.len() <= HISTOGRAM_BUCKETS_MAX);

/// What a family counts, as the `# TYPE` line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One family as read at one instant: the input of [`crate::render::encode`].
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySnapshot {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub series: Vec<SeriesSnapshot>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSnapshot {
    /// (label name, label value), in the family's label order.
    pub labels: Vec<(String, String)>,
    pub value: SeriesValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SeriesValue {
    Counter(u64),
    Gauge(i64),
    Histogram {
        /// Upper bounds, ascending; the `+Inf` bucket is implied.
        bounds: Vec<f64>,
        /// Observations per bucket, NOT cumulative: `bounds.len() + 1`
        /// entries, the last one above every bound.
        counts: Vec<u64>,
        sum: f64,
    },
}

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Raft indexes and terms are u64; none comes near i64::MAX, but saturate
    /// rather than wrap if one did.
    pub fn set_u64(&self, value: u64) {
        self.set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    pub fn add(&self, amount: i64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct HistogramCore {
    bounds: Arc<[f64]>,
    /// One per bound plus `+Inf`; not cumulative.
    counts: Box<[AtomicU64]>,
    /// f64 bits: there is no atomic float.
    sum_bits: AtomicU64,
}

/// Observations sorted into fixed buckets, with their sum.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<HistogramCore>);

impl Histogram {
    fn new(bounds: Arc<[f64]>) -> Histogram {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(HistogramCore {
            bounds,
            counts,
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Counts `value` in the first bucket whose upper bound is >= it. NaN
    /// is ignored: it has no bucket and would poison the sum.
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let core = &self.0;
        let index = core.bounds.partition_point(|bound| *bound < value);
        core.counts[index].fetch_add(1, Ordering::Relaxed);
        let mut current = core.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + value).to_bits();
            match core.sum_bits.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    /// Observes the time until the returned guard is dropped, so an early
    /// `?` return is measured too.
    pub fn start_timer(&self) -> HistogramTimer {
        HistogramTimer {
            histogram: self.clone(),
            started: Instant::now(),
        }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    fn value(&self) -> SeriesValue {
        SeriesValue::Histogram {
            bounds: self.0.bounds.to_vec(),
            counts: self
                .0
                .counts
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .collect(),
            sum: f64::from_bits(self.0.sum_bits.load(Ordering::Relaxed)),
        }
    }
}

/// See [`Histogram::start_timer`].
pub struct HistogramTimer {
    histogram: Histogram,
    started: Instant,
}

impl Drop for HistogramTimer {
    fn drop(&mut self) {
        self.histogram.observe_duration(self.started.elapsed());
    }
}

/// What a family is made of; sealed to the three kinds above.
trait Series: Clone + Send + Sync + 'static {
    const KIND: MetricKind;
    fn value(&self) -> SeriesValue;
}

impl Series for Counter {
    const KIND: MetricKind = MetricKind::Counter;
    fn value(&self) -> SeriesValue {
        SeriesValue::Counter(self.get())
    }
}

impl Series for Gauge {
    const KIND: MetricKind = MetricKind::Gauge;
    fn value(&self) -> SeriesValue {
        SeriesValue::Gauge(self.get())
    }
}

impl Series for Histogram {
    const KIND: MetricKind = MetricKind::Histogram;
    fn value(&self) -> SeriesValue {
        Histogram::value(self)
    }
}

struct Family<S: Series> {
    name: String,
    help: String,
    label_names: Vec<String>,
    /// Label values -> series, in creation order; at most
    /// [`LABEL_SETS_MAX`] + 1 (the overflow series) entries, so a linear
    /// search is as fast as a map.
    series: Mutex<Vec<(Vec<String>, S)>>,
    make: Box<dyn Fn() -> S + Send + Sync>,
    overflow_logged: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Metrics are plain numbers: a panic elsewhere leaves nothing
    // half-updated worth refusing to read.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `value` cut to [`LABEL_VALUE_BYTES_MAX`] bytes at a character boundary.
fn bounded_label_value(value: &str) -> &str {
    if value.len() <= LABEL_VALUE_BYTES_MAX {
        return value;
    }
    let mut end = LABEL_VALUE_BYTES_MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

impl<S: Series> Family<S> {
    fn with(&self, values: &[&str]) -> S {
        debug_assert_eq!(
            values.len(),
            self.label_names.len(),
            "{}: wrong number of label values",
            self.name
        );
        let wanted: Vec<&str> = if values.len() == self.label_names.len() {
            values.iter().map(|v| bounded_label_value(v)).collect()
        } else {
            // A call site with the wrong arity is a bug; count it somewhere
            // visible rather than panic in a request handler.
            vec![OVERFLOW_LABEL_VALUE; self.label_names.len()]
        };
        let mut series = lock(&self.series);
        if let Some((_, found)) = series
            .iter()
            .find(|(labels, _)| labels.iter().map(String::as_str).eq(wanted.iter().copied()))
        {
            return found.clone();
        }
        let labels: Vec<String> = if series.len() < LABEL_SETS_MAX {
            wanted.iter().map(|v| v.to_string()).collect()
        } else {
            if !self.overflow_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    family = %self.name,
                    limit = LABEL_SETS_MAX,
                    "too many label sets; further ones are counted as {OVERFLOW_LABEL_VALUE}"
                );
            }
            let overflow = vec![OVERFLOW_LABEL_VALUE.to_string(); self.label_names.len()];
            if let Some((_, found)) = series.iter().find(|(labels, _)| *labels == overflow) {
                return found.clone();
            }
            overflow
        };
        let created = (self.make)();
        series.push((labels, created.clone()));
        created
    }
}

/// Type-erased family, as the registry keeps it.
trait Collect: Send + Sync {
    fn name(&self) -> &str;
    fn snapshot(&self) -> FamilySnapshot;
}

impl<S: Series> Collect for Family<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> FamilySnapshot {
        let series = lock(&self.series)
            .iter()
            .map(|(values, series)| SeriesSnapshot {
                labels: self
                    .label_names
                    .iter()
                    .cloned()
                    .zip(values.iter().cloned())
                    .collect(),
                value: series.value(),
            })
            .collect();
        FamilySnapshot {
            name: self.name.clone(),
            help: self.help.clone(),
            kind: S::KIND,
            series,
        }
    }
}

/// A family of counters with labels; [`CounterVec::with`] picks one.
#[derive(Clone)]
pub struct CounterVec(Arc<Family<Counter>>);

impl CounterVec {
    /// The counter for these label values (in the family's label order),
    /// created at zero on first use.
    pub fn with(&self, values: &[&str]) -> Counter {
        self.0.with(values)
    }
}

#[derive(Clone)]
pub struct GaugeVec(Arc<Family<Gauge>>);

impl GaugeVec {
    pub fn with(&self, values: &[&str]) -> Gauge {
        self.0.with(values)
    }
}

#[derive(Clone)]
pub struct HistogramVec(Arc<Family<Histogram>>);

impl HistogramVec {
    pub fn with(&self, values: &[&str]) -> Histogram {
        self.0.with(values)
    }
}

type ScrapeHook = Box<dyn Fn() + Send + Sync>;

/// Every family of one process (or, in tests, one node), and the hooks that
/// refresh gauges read from elsewhere (raft metrics, region maps) just
/// before a scrape.
#[derive(Default)]
pub struct Registry {
    families: Mutex<Vec<Arc<dyn Collect>>>,
    hooks: Mutex<Vec<ScrapeHook>>,
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    // `__` is reserved for Prometheus' own labels.
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn counter(&self, name: &str, help: &str) -> Result<Counter, MetricsError> {
        Ok(self.counter_vec(name, help, &[])?.with(&[]))
    }

    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<CounterVec, MetricsError> {
        self.register(name, help, label_names, Box::new(Counter::default))
            .map(CounterVec)
    }

    pub fn gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricsError> {
        Ok(self.gauge_vec(name, help, &[])?.with(&[]))
    }

    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
    ) -> Result<GaugeVec, MetricsError> {
        self.register(name, help, label_names, Box::new(Gauge::default))
            .map(GaugeVec)
    }

    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        bounds: &[f64],
    ) -> Result<Histogram, MetricsError> {
        Ok(self.histogram_vec(name, help, &[], bounds)?.with(&[]))
    }

    /// `bounds`: ascending, finite upper bounds (at most
    /// [`HISTOGRAM_BUCKETS_MAX`]); `+Inf` is added.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        bounds: &[f64],
    ) -> Result<HistogramVec, MetricsError> {
        let invalid = |hint: &str| MetricsError::InvalidBuckets {
            name: name.to_string(),
            hint: hint.to_string(),
        };
        if bounds.is_empty() || bounds.len() > HISTOGRAM_BUCKETS_MAX {
            return Err(invalid(&format!(
                "give 1 to {HISTOGRAM_BUCKETS_MAX} upper bounds"
            )));
        }
        if bounds.iter().any(|bound| !bound.is_finite()) {
            return Err(invalid("bounds must be finite (+Inf is implied)"));
        }
        if bounds.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(invalid("bounds must be strictly ascending"));
        }
        if label_names.contains(&"le") {
            return Err(MetricsError::InvalidLabelName {
                name: name.to_string(),
                label: "le".to_string(),
            });
        }
        let bounds: Arc<[f64]> = bounds.into();
        self.register(
            name,
            help,
            label_names,
            Box::new(move || Histogram::new(bounds.clone())),
        )
        .map(HistogramVec)
    }

    fn register<S: Series>(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        make: Box<dyn Fn() -> S + Send + Sync>,
    ) -> Result<Arc<Family<S>>, MetricsError> {
        if !valid_metric_name(name) {
            return Err(MetricsError::InvalidName {
                name: name.to_string(),
            });
        }
        if label_names.len() > LABEL_NAMES_MAX {
            return Err(MetricsError::TooManyLabelNames {
                name: name.to_string(),
                limit: LABEL_NAMES_MAX,
            });
        }
        if let Some(label) = label_names.iter().find(|label| !valid_label_name(label)) {
            return Err(MetricsError::InvalidLabelName {
                name: name.to_string(),
                label: label.to_string(),
            });
        }
        let mut families = lock(&self.families);
        if families.iter().any(|family| family.name() == name) {
            return Err(MetricsError::Duplicate {
                name: name.to_string(),
            });
        }
        if families.len() >= FAMILIES_MAX {
            return Err(MetricsError::TooManyFamilies {
                limit: FAMILIES_MAX,
            });
        }
        let family = Arc::new(Family {
            name: name.to_string(),
            help: help.to_string(),
            label_names: label_names.iter().map(|l| l.to_string()).collect(),
            series: Mutex::new(Vec::new()),
            make,
            overflow_logged: AtomicBool::new(false),
        });
        // An unlabelled family has exactly one series: create it now so it
        // is rendered (at zero) before anything happened.
        if label_names.is_empty() {
            family.with(&[]);
        }
        families.push(family.clone());
        Ok(family)
    }

    /// Runs `hook` before every scrape, e.g. to copy raft metrics into
    /// gauges. Hooks must be quick and must not block.
    pub fn on_scrape(&self, hook: impl Fn() + Send + Sync + 'static) -> Result<(), MetricsError> {
        let mut hooks = lock(&self.hooks);
        if hooks.len() >= SCRAPE_HOOKS_MAX {
            return Err(MetricsError::TooManyHooks {
                limit: SCRAPE_HOOKS_MAX,
            });
        }
        hooks.push(Box::new(hook));
        Ok(())
    }

    /// Runs the scrape hooks, then reads every family in registration order.
    pub fn gather(&self) -> Vec<FamilySnapshot> {
        for hook in lock(&self.hooks).iter() {
            hook();
        }
        lock(&self.families)
            .iter()
            .map(|family| family.snapshot())
            .collect()
    }

    /// The Prometheus text exposition of [`Registry::gather`].
    pub fn render(&self) -> String {
        crate::render::encode(&self.gather())
    }
}

/// A scrape hook holding only a weak reference, for owners that hold the
/// registry themselves (a strong one would be a cycle and never drop).
pub fn weak_hook<T: Send + Sync + 'static>(
    owner: &Arc<T>,
    refresh: impl Fn(&T) + Send + Sync + 'static,
) -> impl Fn() + Send + Sync + 'static {
    let owner: Weak<T> = Arc::downgrade(owner);
    move || {
        if let Some(owner) = owner.upgrade() {
            refresh(&owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_past_the_cap_share_one_overflow_series() {
        let registry = Registry::new();
        let errors = registry
            .counter_vec("arbor_test_errors_total", "h", &["code"])
            .unwrap();
        for i in 0..LABEL_SETS_MAX + 50 {
            errors.with(&[&format!("code-{i}")]).inc();
        }
        let family = &registry.gather()[0];
        assert_eq!(family.series.len(), LABEL_SETS_MAX + 1);
        let overflow = family
            .series
            .iter()
            .find(|s| s.labels[0].1 == OVERFLOW_LABEL_VALUE)
            .expect("an overflow series");
        assert_eq!(overflow.value, SeriesValue::Counter(50));
        // Label sets created before the cap still get their own series.
        errors.with(&["code-0"]).inc();
        assert_eq!(errors.with(&["code-0"]).get(), 2);
    }

    #[test]
    fn long_label_values_are_cut_at_a_character_boundary() {
        let registry = Registry::new();
        let family = registry
            .counter_vec("arbor_test_total", "h", &["v"])
            .unwrap();
        let long = "é".repeat(LABEL_VALUE_BYTES_MAX);
        family.with(&[&long]).inc();
        let labels = &registry.gather()[0].series[0].labels;
        assert!(labels[0].1.len() <= LABEL_VALUE_BYTES_MAX);
        assert!(long.starts_with(&labels[0].1));
    }

    #[test]
    fn histogram_counts_each_value_in_the_first_bucket_at_or_above_it() {
        let registry = Registry::new();
        let histogram = registry
            .histogram("arbor_test_seconds", "h", &[0.1, 1.0])
            .unwrap();
        for value in [0.05, 0.1, 0.5, 1.0, 3.0, f64::NAN] {
            histogram.observe(value);
        }
        let SeriesValue::Histogram { counts, sum, .. } = histogram.value() else {
            panic!("a histogram");
        };
        assert_eq!(counts, vec![2, 2, 1]);
        assert!((sum - 4.65).abs() < 1e-9, "{sum}");
        assert_eq!(histogram.count(), 5);
    }

    #[test]
    fn registration_rejects_bad_names_duplicates_and_bad_buckets() {
        let registry = Registry::new();
        assert!(matches!(
            registry.counter("9starts_with_digit", "h"),
            Err(MetricsError::InvalidName { .. })
        ));
        assert!(matches!(
            registry.counter_vec("arbor_ok_total", "h", &["__reserved"]),
            Err(MetricsError::InvalidLabelName { .. })
        ));
        assert!(matches!(
            registry.counter_vec("arbor_ok_total", "h", &["a", "b", "c", "d", "e"]),
            Err(MetricsError::TooManyLabelNames { .. })
        ));
        registry.counter("arbor_ok_total", "h").unwrap();
        assert!(matches!(
            registry.gauge("arbor_ok_total", "h"),
            Err(MetricsError::Duplicate { .. })
        ));
        for bounds in [&[][..], &[1.0, 1.0], &[2.0, 1.0], &[f64::INFINITY]] {
            assert!(matches!(
                registry.histogram("arbor_h_seconds", "h", bounds),
                Err(MetricsError::InvalidBuckets { .. })
            ));
        }
        assert!(matches!(
            registry.histogram_vec("arbor_h_seconds", "h", &["le"], &[1.0]),
            Err(MetricsError::InvalidLabelName { .. })
        ));
    }

    #[test]
    fn a_registry_holds_at_most_families_max_families() {
        let registry = Registry::new();
        for i in 0..FAMILIES_MAX {
            registry.gauge(&format!("arbor_g{i}"), "h").unwrap();
        }
        assert!(matches!(
            registry.gauge("arbor_one_more", "h"),
            Err(MetricsError::TooManyFamilies { .. })
        ));
    }

    #[test]
    fn scrape_hooks_run_before_every_gather() {
        let registry = Registry::new();
        let gauge = registry.gauge("arbor_hooked", "h").unwrap();
        let source = Arc::new(AtomicI64::new(7));
        let read = source.clone();
        let target = gauge.clone();
        registry
            .on_scrape(move || target.set(read.load(Ordering::Relaxed)))
            .unwrap();
        assert_eq!(registry.gather()[0].series[0].value, SeriesValue::Gauge(7));
        source.store(9, Ordering::Relaxed);
        assert_eq!(registry.gather()[0].series[0].value, SeriesValue::Gauge(9));
    }

    #[test]
    fn a_weak_hook_stops_refreshing_once_its_owner_is_gone() {
        let owner = Arc::new(AtomicI64::new(3));
        let seen = Arc::new(AtomicI64::new(0));
        let into = seen.clone();
        let hook = weak_hook(&owner, move |value| {
            into.store(value.load(Ordering::Relaxed), Ordering::Relaxed)
        });
        hook();
        assert_eq!(seen.load(Ordering::Relaxed), 3);
        drop(owner);
        seen.store(0, Ordering::Relaxed);
        hook();
        assert_eq!(seen.load(Ordering::Relaxed), 0);
    }
}
