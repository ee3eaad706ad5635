//! Latency histograms and percentiles: pure, no clock.
//!
//! Log-linear buckets (64 per power of two) keep the relative error of any
//! percentile under 1/64 with a fixed memory size, however many samples a
//! run records, so a fast benchmark cannot grow memory without bound.

use serde::Serialize;

/// Values below this are recorded exactly (one bucket per microsecond).
const SUB_BUCKETS: u64 = 64;
const SUB_BUCKET_BITS: u32 = 6;
/// Largest latency recorded, in microseconds (about 12.7 days); larger
/// values are clamped to it.
pub const LATENCY_US_MAX: u64 = (1 << 40) - 1;
/// Number of buckets needed to cover `0..=LATENCY_US_MAX`.
const BUCKETS: usize = (SUB_BUCKETS + (40 - SUB_BUCKET_BITS as u64) * SUB_BUCKETS) as usize;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum_us: u128,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let shift = exponent - SUB_BUCKET_BITS;
    let sub = (value >> shift) & (SUB_BUCKETS - 1);
    (SUB_BUCKETS + u64::from(shift) * SUB_BUCKETS + sub) as usize
}

/// The smallest value that falls into `bucket`.
fn lower_bound_of(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < SUB_BUCKETS {
        return bucket;
    }
    let shift = (bucket - SUB_BUCKETS) / SUB_BUCKETS;
    let sub = (bucket - SUB_BUCKETS) % SUB_BUCKETS;
    (SUB_BUCKETS + sub) << shift
}

/// The middle of `bucket`'s value range: the reported value of a percentile.
fn middle_of(bucket: usize) -> u64 {
    let low = lower_bound_of(bucket);
    let high = lower_bound_of(bucket + 1);
    low + (high - low) / 2
}

impl Histogram {
    pub fn record_us(&mut self, value_us: u64) {
        let value = value_us.min(LATENCY_US_MAX);
        self.counts[bucket_of(value)] += 1;
        self.total += 1;
        self.sum_us += u128::from(value);
        self.max_us = self.max_us.max(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn mean_us(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_us as f64 / self.total as f64)
    }

    /// The value below which `quantile` (0..=1) of the samples fall, within
    /// the bucket precision; `None` without samples.
    pub fn percentile_us(&self, quantile: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(middle_of(bucket).min(self.max_us));
            }
        }
        Some(self.max_us)
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
        LatencySummary {
            samples: self.count(),
            mean_ms: self.mean_us().map(|us| us / 1000.0),
            p50_ms: ms(self.percentile_us(0.50)),
            p99_ms: ms(self.percentile_us(0.99)),
            max_ms: ms((self.total > 0).then_some(self.max_us)),
        }
    }
}

/// What the report keeps of a histogram.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub samples: u64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Minimum, median and maximum of a few measurements (failover gaps).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub min: Option<f64>,
    pub median: Option<f64>,
    pub max: Option<f64>,
}

pub fn spread(values: &[f64]) -> Spread {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    };
    Spread {
        count: sorted.len(),
        min: sorted.first().copied(),
        median,
        max: sorted.last().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut histogram = Histogram::default();
        for value in 1..=50 {
            histogram.record_us(value);
        }
        assert_eq!(histogram.percentile_us(0.5), Some(25));
        assert_eq!(histogram.percentile_us(0.99), Some(50));
        assert_eq!(histogram.percentile_us(0.0), Some(1));
        assert_eq!(histogram.count(), 50);
        assert_eq!(histogram.mean_us(), Some(25.5));
    }

    #[test]
    fn large_values_stay_within_bucket_precision() {
        for value in [100, 1_000, 12_345, 999_999, 5_000_000_000] {
            let mut histogram = Histogram::default();
            histogram.record_us(value);
            histogram.record_us(value);
            let reported = histogram.percentile_us(0.5).unwrap_or(0) as f64;
            let error = (reported - value as f64).abs() / value as f64;
            assert!(error <= 1.0 / 64.0, "{value} reported as {reported}");
        }
    }

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut last = 0;
        for value in (0..200_000).step_by(7) {
            let bucket = bucket_of(value);
            assert!(bucket >= last, "bucket order breaks at {value}");
            assert!(lower_bound_of(bucket) <= value && value < lower_bound_of(bucket + 1));
            last = bucket;
        }
        assert!(bucket_of(LATENCY_US_MAX) < BUCKETS);
    }

    #[test]
    fn p99_sees_the_slow_tail() {
        let mut histogram = Histogram::default();
        for _ in 0..980 {
            histogram.record_us(1_000);
        }
        for _ in 0..20 {
            histogram.record_us(50_000);
        }
        let p50 = histogram.percentile_us(0.5).unwrap_or(0);
        let p99 = histogram.percentile_us(0.99).unwrap_or(0);
        assert!((990..=1_010).contains(&p50), "p50 {p50}");
        assert!((49_000..=50_000).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn merging_adds_counts() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record_us(10);
        b.record_us(30);
        b.record_us(30);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.percentile_us(0.5), Some(30));
        assert_eq!(a.summary().max_ms, Some(0.03));
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let histogram = Histogram::default();
        assert_eq!(histogram.percentile_us(0.5), None);
        assert_eq!(histogram.summary(), LatencySummary::default());
    }

    #[test]
    fn values_above_the_limit_are_clamped() {
        let mut histogram = Histogram::default();
        histogram.record_us(u64::MAX);
        let reported = histogram.percentile_us(1.0).unwrap_or(0);
        assert!(reported <= LATENCY_US_MAX);
        assert!(reported as f64 >= LATENCY_US_MAX as f64 * (1.0 - 1.0 / 64.0));
        assert_eq!(
            histogram.summary().max_ms,
            Some(LATENCY_US_MAX as f64 / 1000.0)
        );
    }

    #[test]
    fn spread_takes_the_middle_of_an_even_count() {
        assert_eq!(
            spread(&[3.0, 1.0, 2.0, 10.0]),
            Spread {
                count: 4,
                min: Some(1.0),
                median: Some(2.5),
                max: Some(10.0)
            }
        );
        assert_eq!(spread(&[]).median, None);
        assert_eq!(spread(&[5.0]).median, Some(5.0));
    }
}
