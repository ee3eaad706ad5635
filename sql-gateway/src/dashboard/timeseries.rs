//! The dashboard's throughput/latency chart data: a ring of one-second
//! buckets of this gateway's statements, errors and a latency histogram,
//! so a failover shows up as a dip and a recovery.
//!
//! Pure: time comes in as an argument (milliseconds since the epoch).
//! Invariant: memory is fixed at [`TIMESERIES_SECONDS_MAX`] buckets of
//! [`LATENCY_BUCKETS`] + 1 counters, however many statements run; a bucket
//! is reused (reset) when its second comes round again.

use serde_json::{json, Value};

/// Seconds of history kept and shown: the last five minutes.
pub(crate) const TIMESERIES_SECONDS_MAX: usize = 300;
/// Latency buckets per second; upper bounds grow geometrically from
/// [`LATENCY_FIRST_BOUND_US`] by [`LATENCY_BOUND_GROWTH`], so a quantile is
/// exact to within 25% from 50 µs to about a minute (slower ones share one
/// overflow bucket).
pub(crate) const LATENCY_BUCKETS: usize = 64;
const LATENCY_FIRST_BOUND_US: f64 = 50.0;
const LATENCY_BOUND_GROWTH: f64 = 1.25;
const SECOND_MS: u64 = 1_000;

#[derive(Clone)]
struct Second {
    /// Which second (since the epoch) these counts belong to; a slot whose
    /// second is not the one asked for is empty.
    second: u64,
    statements: u32,
    errors: u32,
    /// Per latency bucket (not cumulative); the last is the overflow.
    latency: [u32; LATENCY_BUCKETS + 1],
}

impl Second {
    fn empty(second: u64) -> Second {
        Second {
            second,
            statements: 0,
            errors: 0,
            latency: [0; LATENCY_BUCKETS + 1],
        }
    }
}

/// One second of the chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// Start of the second, ms since the epoch.
    pub at_ms: u64,
    pub statements: u32,
    pub errors: u32,
    /// None when no statement finished in that second.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

pub(crate) struct TimeSeries {
    slots: Vec<Second>,
    /// The first second with data worth showing: the chart starts here
    /// rather than with minutes of zeros before the gateway existed.
    started_second: u64,
}

/// The bucket of a latency: the first whose upper bound is >= it.
fn bucket_of(latency_us: u64) -> usize {
    let ratio = latency_us as f64 / LATENCY_FIRST_BOUND_US;
    if ratio <= 1.0 {
        return 0;
    }
    let index = (ratio.ln() / LATENCY_BOUND_GROWTH.ln()).ceil() as usize;
    // Float rounding may put an exact bound one bucket high; that costs
    // at most one step of resolution, never a wrong order.
    index.min(LATENCY_BUCKETS)
}

/// Upper bound of a bucket, in ms (the overflow bucket reports the last
/// finite bound: "at least this").
fn bound_ms(bucket: usize) -> f64 {
    let bucket = bucket.min(LATENCY_BUCKETS - 1);
    LATENCY_FIRST_BOUND_US * LATENCY_BOUND_GROWTH.powi(bucket as i32) / 1_000.0
}

/// The upper bound of the bucket holding the `quantile` observation.
fn quantile_ms(latency: &[u32], quantile: f64) -> Option<f64> {
    let total: u64 = latency.iter().map(|c| u64::from(*c)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (bucket, count) in latency.iter().enumerate() {
        seen += u64::from(*count);
        if seen >= rank {
            return Some(bound_ms(bucket));
        }
    }
    Some(bound_ms(LATENCY_BUCKETS))
}

impl TimeSeries {
    pub(crate) fn new(now_ms: u64) -> TimeSeries {
        TimeSeries {
            slots: vec![Second::empty(u64::MAX); TIMESERIES_SECONDS_MAX],
            started_second: now_ms / SECOND_MS,
        }
    }

    /// Counts one finished statement (`failed`: it answered an error).
    pub(crate) fn record(&mut self, now_ms: u64, latency_us: u64, failed: bool) {
        let second = now_ms / SECOND_MS;
        let slot = &mut self.slots[(second % TIMESERIES_SECONDS_MAX as u64) as usize];
        if slot.second != second {
            *slot = Second::empty(second);
        }
        slot.statements = slot.statements.saturating_add(1);
        if failed {
            slot.errors = slot.errors.saturating_add(1);
        }
        let bucket = &mut slot.latency[bucket_of(latency_us)];
        *bucket = bucket.saturating_add(1);
    }

    /// Every complete second of the last [`TIMESERIES_SECONDS_MAX`] (idle
    /// ones as zeros, so a stall is visible), oldest first. The current,
    /// still-filling second is left out: it would always look like a dip.
    pub(crate) fn points(&self, now_ms: u64) -> Vec<Point> {
        let current = now_ms / SECOND_MS;
        let first = current
            .saturating_sub(TIMESERIES_SECONDS_MAX as u64)
            .max(self.started_second);
        (first..current)
            .map(|second| {
                let slot = &self.slots[(second % TIMESERIES_SECONDS_MAX as u64) as usize];
                let at_ms = second * SECOND_MS;
                if slot.second != second {
                    return Point {
                        at_ms,
                        statements: 0,
                        errors: 0,
                        p50_ms: None,
                        p99_ms: None,
                    };
                }
                Point {
                    at_ms,
                    statements: slot.statements,
                    errors: slot.errors,
                    p50_ms: quantile_ms(&slot.latency, 0.50),
                    p99_ms: quantile_ms(&slot.latency, 0.99),
                }
            })
            .collect()
    }

    /// The `/api/timeseries` document.
    pub(crate) fn to_json(&self, now_ms: u64) -> Value {
        let points: Vec<Value> = self
            .points(now_ms)
            .into_iter()
            .map(|p| {
                json!({
                    "at_ms": p.at_ms,
                    "statements": p.statements,
                    "errors": p.errors,
                    "p50_ms": p.p50_ms,
                    "p99_ms": p.p99_ms,
                })
            })
            .collect();
        json!({
            "interval_ms": SECOND_MS,
            "seconds_max": TIMESERIES_SECONDS_MAX,
            "now_ms": now_ms,
            "points": points,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn statements_and_errors_land_in_the_second_they_finished() {
        let mut series = TimeSeries::new(T0);
        series.record(T0 + 100, 1_000, false);
        series.record(T0 + 900, 1_000, true);
        series.record(T0 + 1_500, 1_000, false);
        let points = series.points(T0 + 2_100);
        assert_eq!(points.len(), 2);
        assert_eq!((points[0].statements, points[0].errors), (2, 1));
        assert_eq!((points[1].statements, points[1].errors), (1, 0));
        assert_eq!(points[0].at_ms, T0);
        assert_eq!(points[1].at_ms, T0 + 1_000);
    }

    #[test]
    fn the_current_second_is_not_shown_and_idle_seconds_are_zeros() {
        let mut series = TimeSeries::new(T0);
        series.record(T0, 500, false);
        series.record(T0 + 3_000, 500, false);
        let points = series.points(T0 + 3_400);
        let counts: Vec<u32> = points.iter().map(|p| p.statements).collect();
        assert_eq!(counts, vec![1, 0, 0], "second 3 is still filling");
        assert_eq!(points[1].p50_ms, None);
    }

    #[test]
    fn the_ring_keeps_only_the_last_seconds_max_seconds() {
        let mut series = TimeSeries::new(T0);
        let seconds = TIMESERIES_SECONDS_MAX as u64 + 50;
        for second in 0..seconds {
            series.record(T0 + second * 1_000, 200, false);
        }
        let now = T0 + seconds * 1_000;
        let points = series.points(now);
        assert_eq!(points.len(), TIMESERIES_SECONDS_MAX);
        assert!(points.iter().all(|p| p.statements == 1));
        assert_eq!(points[0].at_ms, now - TIMESERIES_SECONDS_MAX as u64 * 1_000);
    }

    #[test]
    fn a_reused_slot_forgets_the_second_it_held_before() {
        let mut series = TimeSeries::new(T0);
        series.record(T0, 200, true);
        let lap = TIMESERIES_SECONDS_MAX as u64 * 1_000;
        series.record(T0 + lap, 200, false);
        let last = series.points(T0 + lap + 1_000).pop().expect("a point");
        assert_eq!((last.statements, last.errors), (1, 0));
    }

    #[test]
    fn quantiles_are_within_one_bucket_of_the_true_latency() {
        let mut series = TimeSeries::new(T0);
        // 98 fast statements (2 ms) and 2 slow ones (400 ms).
        for _ in 0..98 {
            series.record(T0 + 10, 2_000, false);
        }
        for _ in 0..2 {
            series.record(T0 + 20, 400_000, false);
        }
        let point = &series.points(T0 + 1_000)[0];
        let p50 = point.p50_ms.expect("p50");
        let p99 = point.p99_ms.expect("p99");
        assert!((2.0..2.0 * LATENCY_BOUND_GROWTH).contains(&p50), "{p50}");
        assert!(
            (400.0..400.0 * LATENCY_BOUND_GROWTH).contains(&p99),
            "{p99}"
        );
    }

    #[test]
    fn latencies_beyond_the_last_bucket_are_kept_as_at_least_its_bound() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(50), 0);
        assert_eq!(bucket_of(51), 1);
        assert_eq!(bucket_of(u64::MAX), LATENCY_BUCKETS);
        assert!(bound_ms(LATENCY_BUCKETS) > 60_000.0);
    }

    #[test]
    fn the_json_document_lists_points_with_their_fields() {
        let mut series = TimeSeries::new(T0);
        series.record(T0 + 1, 3_000, false);
        let document = series.to_json(T0 + 1_000);
        assert_eq!(document["interval_ms"], 1_000);
        assert_eq!(document["seconds_max"], TIMESERIES_SECONDS_MAX);
        let point = &document["points"][0];
        assert_eq!(point["statements"], 1);
        assert_eq!(point["errors"], 0);
        assert!(point["p50_ms"].as_f64().is_some());
        assert!(point["p99_ms"].as_f64().is_some());
    }
}
