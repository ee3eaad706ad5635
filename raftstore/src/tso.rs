//! The timestamp oracle client: hybrid timestamps (`physical_ms << 18 |
//! logical`) from the coordinators' `GetTimestamps`, which only the lease
//! holder serves.
//!
//! Callers are batched: one worker task sends one `GetTimestamps` for every
//! caller that queued before it sent, and hands each its own timestamp, so
//! a burst of transactions costs one round trip. A caller queued after a
//! request left waits for the next one — a timestamp is never older than
//! the call that asked for it.
//!
//! **Invariant:** a reply served under a lease generation older than the
//! newest this client has seen is rejected (a deposed holder may still
//! answer for a moment); the client asks the next coordinator instead.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::GetTimestampsRequest;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::RaftstoreError;
use crate::network::ChannelPool;

/// Most callers answered by one `GetTimestamps`.
pub const TSO_BATCH_MAX: usize = 256;
/// Most callers queued for the worker.
pub const TSO_QUEUE_MAX: usize = 4_096;
/// One `GetTimestamps` call gives up after this long.
pub const TSO_CALL_TIMEOUT_MS: u64 = 2_000;
/// Pause between rounds over every coordinator (doubling up to the max),
/// e.g. while a new lease holder takes over.
pub const TSO_BACKOFF_MIN_MS: u64 = 20;
pub const TSO_BACKOFF_MAX_MS: u64 = 250;

const _: () = assert!(TSO_BATCH_MAX <= u32::MAX as usize);
const _: () = assert!(TSO_BACKOFF_MIN_MS <= TSO_BACKOFF_MAX_MS);

type Waiter = oneshot::Sender<Result<u64, TsoFailure>>;

/// Why no timestamp could be had before the deadline.
#[derive(Debug, Clone)]
struct TsoFailure {
    last_error: String,
}

struct Shared {
    coordinators: Vec<String>,
    retry_deadline: Duration,
    pool: ChannelPool,
    newest_generation: AtomicU64,
    /// The newest timestamp handed out.
    newest_timestamp: AtomicU64,
    /// The coordinator that answered last (the lease holder, likely).
    preferred: AtomicUsize,
}

/// Cheap to share behind an `Arc`; one worker per client.
pub struct TsoClient {
    shared: Arc<Shared>,
    queue: OnceLock<mpsc::Sender<Waiter>>,
}

impl TsoClient {
    pub fn new(coordinators: Vec<String>, retry_deadline: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                coordinators,
                retry_deadline,
                pool: ChannelPool::default(),
                newest_generation: AtomicU64::new(0),
                newest_timestamp: AtomicU64::new(0),
                preferred: AtomicUsize::new(0),
            }),
            queue: OnceLock::new(),
        }
    }

    /// One timestamp above every timestamp served before this call.
    pub async fn timestamp(&self) -> Result<u64, RaftstoreError> {
        let queue = self.queue.get_or_init(|| {
            // Started on first use, inside the caller's runtime; it ends
            // when this client (the only sender) is dropped.
            let (sender, receiver) = mpsc::channel(TSO_QUEUE_MAX);
            tokio::spawn(run_worker(self.shared.clone(), receiver));
            sender
        });
        let (waiter, answer) = oneshot::channel();
        let result = match queue.send(waiter).await {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        };
        let result = match result {
            Some(result) => result,
            // The worker is gone (its runtime stopped): ask directly.
            None => self.shared.fetch(1).await,
        };
        result.map_err(|failure| self.shared.unavailable(failure))
    }

    /// The newest lease generation a reply carried.
    pub fn newest_generation(&self) -> u64 {
        self.shared.newest_generation.load(Ordering::SeqCst)
    }

    /// The newest timestamp this client handed out (0 = none yet): a lower
    /// bound of the TSO's time now, without asking.
    pub fn newest_timestamp(&self) -> u64 {
        self.shared.newest_timestamp.load(Ordering::SeqCst)
    }
}

async fn run_worker(shared: Arc<Shared>, mut queue: mpsc::Receiver<Waiter>) {
    while let Some(first) = queue.recv().await {
        let mut waiters = vec![first];
        while waiters.len() < TSO_BATCH_MAX {
            match queue.try_recv() {
                Ok(waiter) => waiters.push(waiter),
                Err(_) => break,
            }
        }
        let count = waiters.len() as u64;
        let answer = shared.fetch(count as u32).await;
        for (offset, waiter) in (0..count).zip(waiters) {
            // A caller that gave up has dropped its receiver; nothing to do.
            let _ = waiter.send(answer.clone().map(|first| first + offset));
        }
    }
}

/// Whether a reply may be used: not from an older lease generation than
/// one already seen, and carrying what was asked.
fn acceptable(newest_generation: u64, generation: u64, first: u64, count: u32, asked: u32) -> bool {
    generation >= newest_generation && count == asked && first != 0
}

impl Shared {
    fn unavailable(&self, failure: TsoFailure) -> RaftstoreError {
        RaftstoreError::NoCoordinatorReachable {
            addresses: self.coordinators.clone(),
            last_error: format!("no timestamp: {}", failure.last_error),
        }
    }

    /// `count` consecutive timestamps (the first returned), asking every
    /// coordinator in turn from the preferred one, until the deadline.
    async fn fetch(&self, count: u32) -> Result<u64, TsoFailure> {
        let deadline = Instant::now() + self.retry_deadline;
        let mut backoff_ms = TSO_BACKOFF_MIN_MS;
        let mut last_error = String::from("no coordinator addresses configured");
        let total = self.coordinators.len();
        if total == 0 {
            return Err(TsoFailure { last_error });
        }
        loop {
            let preferred = self.preferred.load(Ordering::Relaxed);
            for step in 0..total {
                let index = (preferred + step) % total;
                match self.call(&self.coordinators[index], count).await {
                    Ok(first) => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return Ok(first);
                    }
                    Err(error) => last_error = format!("{}: {error}", self.coordinators[index]),
                }
            }
            if Instant::now() + Duration::from_millis(backoff_ms) >= deadline {
                return Err(TsoFailure { last_error });
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(TSO_BACKOFF_MAX_MS);
        }
    }

    async fn call(&self, address: &str, count: u32) -> Result<u64, String> {
        let channel = self.pool.channel(address).map_err(|e| e.to_string())?;
        let mut request = tonic::Request::new(GetTimestampsRequest { count });
        request.set_timeout(Duration::from_millis(TSO_CALL_TIMEOUT_MS));
        let reply = CoordinatorClient::new(channel)
            .get_timestamps(request)
            .await
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?
            .into_inner();
        let newest = self.newest_generation.load(Ordering::SeqCst);
        if !acceptable(newest, reply.generation, reply.first, reply.count, count) {
            return Err(format!(
                "rejected a reply of generation {} (newest seen {newest}), {} timestamps from {}",
                reply.generation, reply.count, reply.first
            ));
        }
        self.newest_generation
            .fetch_max(reply.generation, Ordering::SeqCst);
        let last = reply.first.saturating_add(u64::from(count) - 1);
        self.newest_timestamp.fetch_max(last, Ordering::SeqCst);
        Ok(reply.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_an_older_generation_or_the_wrong_shape_are_rejected() {
        assert!(acceptable(0, 1, 100, 4, 4));
        assert!(acceptable(3, 3, 100, 1, 1), "the same generation");
        assert!(acceptable(3, 4, 100, 1, 1), "a newer generation");
        assert!(
            !acceptable(4, 3, 100, 1, 1),
            "a deposed holder's late reply"
        );
        assert!(!acceptable(0, 1, 100, 2, 4), "fewer timestamps than asked");
        assert!(!acceptable(0, 1, 0, 1, 1), "no timestamp");
    }

    #[tokio::test]
    async fn without_a_reachable_coordinator_the_client_fails_typed_after_its_deadline() {
        // Port 1 on loopback refuses connections.
        let client = TsoClient::new(vec!["127.0.0.1:1".into()], Duration::from_millis(200));
        let started = Instant::now();
        let error = client.timestamp().await.expect_err("nobody to ask");
        assert!(
            matches!(error, RaftstoreError::NoCoordinatorReachable { .. }),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(client.newest_generation(), 0);
    }
}
