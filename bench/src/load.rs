//! A closed-loop load generator: `clients` tasks, each sending its next
//! request when the previous one answered, for a fixed duration.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::report::Outcome;
use crate::stats::Histogram;

/// Pause after a failed request, so a dead target is not hammered in a
/// tight loop (errors are counted, not retried).
pub const ERROR_BACKOFF_MS: u64 = 10;
/// Most concurrent clients one load runs.
pub const CLIENTS_MAX: usize = 1_024;

/// One request; answers how many units it produced (1, or the batch size
/// of a batched TSO request).
pub type Request = Box<dyn FnMut() -> BoxFuture<'static, Result<u64, String>> + Send>;

#[derive(Debug, Default)]
pub struct LoadResult {
    pub ops: u64,
    pub units: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub histogram: Histogram,
    pub first_error: Option<String>,
}

impl LoadResult {
    fn merge(&mut self, other: LoadResult) {
        self.ops += other.ops;
        self.units += other.units;
        self.errors += other.errors;
        self.elapsed = self.elapsed.max(other.elapsed);
        self.histogram.merge(&other.histogram);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub fn outcome(&self) -> Outcome {
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        Outcome {
            throughput: self.ops as f64 / seconds,
            ops: self.ops,
            errors: self.errors,
            aborted_clients: 0,
            abort_rate_pct: Outcome::abort_rate(self.ops, self.errors),
            retried: 0,
            latency: self.histogram.summary(),
            first_error: self.first_error.clone(),
        }
    }

    pub fn units_per_second(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn one_client(mut request: Request, deadline: Instant, started: Instant) -> LoadResult {
    let mut result = LoadResult::default();
    while Instant::now() < deadline {
        let sent = Instant::now();
        match request().await {
            Ok(units) => {
                result.ops += 1;
                result.units += units;
                result
                    .histogram
                    .record_us(sent.elapsed().as_micros().min(u128::from(u64::MAX)) as u64);
            }
            Err(error) => {
                result.errors += 1;
                if result.first_error.is_none() {
                    result.first_error = Some(error);
                }
                tokio::time::sleep(Duration::from_millis(ERROR_BACKOFF_MS)).await;
            }
        }
    }
    result.elapsed = started.elapsed();
    result
}

/// Runs one request loop per element of `clients` (at most
/// [`CLIENTS_MAX`]) for `duration`; requests in flight at the deadline
/// still complete and count.
pub async fn closed_loop(clients: Vec<Request>, duration: Duration) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .take(CLIENTS_MAX)
        .map(|request| tokio::spawn(one_client(request, deadline, started)))
        .collect();
    let mut total = LoadResult::default();
    for task in tasks {
        match task.await {
            Ok(result) => total.merge(result),
            Err(error) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("client task failed: {error}"));
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn closed_loop_counts_successes_errors_and_units() {
        let calls = Arc::new(AtomicU64::new(0));
        let clients: Vec<Request> = (0..2)
            .map(|_| {
                let calls = calls.clone();
                let request: Request = Box::new(move || {
                    let n = calls.fetch_add(1, Ordering::Relaxed);
                    async move {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        if n % 4 == 3 {
                            Err(format!("failure {n}"))
                        } else {
                            Ok(10)
                        }
                    }
                    .boxed()
                });
                request
            })
            .collect();
        let result = closed_loop(clients, Duration::from_millis(200)).await;
        assert!(result.ops > 10, "{result:?}");
        assert!(result.errors > 0);
        assert_eq!(result.units, result.ops * 10);
        assert_eq!(result.histogram.count(), result.ops);
        assert!(result.first_error.is_some_and(|e| e.starts_with("failure")));
        let outcome = LoadResult {
            ops: 50,
            errors: 50,
            elapsed: Duration::from_secs(2),
            ..LoadResult::default()
        }
        .outcome();
        assert_eq!(outcome.throughput, 25.0);
        assert_eq!(outcome.abort_rate_pct, 50.0);
    }
}
