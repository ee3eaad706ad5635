//! Administrative requests of the coordinators: `split_at` (what the
//! gateway's `ALTER TABLE ... SPLIT AT` calls).
//!
//! Only the coordinator lease holder serves them; a standby answers that it
//! is not the holder, and the client asks the next coordinator, the way the
//! TSO client does — a round over every coordinator, then a pause, until a
//! deadline.

use std::time::Duration;

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::{RegionDescriptor, SplitAtRequest};
use tokio::time::Instant;
use tonic::Code;

use super::{check_key, RegionClient};
use crate::error::RaftstoreError;

/// One `SplitAt` call gives up after this long: above the coordinator's own
/// deadline for a split (20 s), so the coordinator answers first.
pub const SPLIT_AT_CALL_TIMEOUT_MS: u64 = 25_000;
/// A `split_at` gives up after this long in all.
pub const SPLIT_AT_DEADLINE_MS: u64 = 60_000;
/// Pause between rounds over every coordinator (doubling up to the max),
/// e.g. while a new lease holder takes over.
pub const SPLIT_AT_BACKOFF_MIN_MS: u64 = 50;
pub const SPLIT_AT_BACKOFF_MAX_MS: u64 = 1_000;

const _: () = assert!(SPLIT_AT_BACKOFF_MIN_MS <= SPLIT_AT_BACKOFF_MAX_MS);
const _: () = assert!(SPLIT_AT_CALL_TIMEOUT_MS < SPLIT_AT_DEADLINE_MS);

/// The regions either side of a split key; `left` is none when the key
/// starts the key space.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitHalves {
    pub left: Option<RegionDescriptor>,
    pub right: RegionDescriptor,
}

/// Whether a failed `SplitAt` call is worth sending to the next coordinator:
/// everything but a refusal of the request itself (a standby's redirect is
/// `FailedPrecondition`).
fn retryable(code: Code) -> bool {
    !matches!(code, Code::InvalidArgument)
}

impl RegionClient {
    /// Splits the region holding `key` exactly at `key` and answers both
    /// halves once root committed the split; a key that already starts a
    /// region answers at once. Fails typed after [`SPLIT_AT_DEADLINE_MS`].
    pub async fn split_at(&self, key: &[u8]) -> Result<SplitHalves, RaftstoreError> {
        check_key(key)?;
        let coordinators = &self.inner.coordinators;
        let deadline = Instant::now() + Duration::from_millis(SPLIT_AT_DEADLINE_MS);
        let mut backoff_ms = SPLIT_AT_BACKOFF_MIN_MS;
        let mut last_error = String::from("no coordinator addresses configured");
        if coordinators.is_empty() {
            return Err(self.no_coordinator(last_error));
        }
        loop {
            for address in coordinators {
                match self.split_at_once(address, key).await {
                    Ok(halves) => {
                        self.forget_split_region(&halves);
                        return Ok(halves);
                    }
                    Err(status) if !retryable(status.code()) => {
                        return Err(RaftstoreError::InvalidArgument {
                            hint: format!("split at {key:?}: {}", status.message()),
                        })
                    }
                    Err(status) => {
                        last_error = format!("{address}: {:?}: {}", status.code(), status.message())
                    }
                }
            }
            if Instant::now() + Duration::from_millis(backoff_ms) >= deadline {
                return Err(self.no_coordinator(format!("split at {key:?}: {last_error}")));
            }
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(SPLIT_AT_BACKOFF_MAX_MS);
        }
    }

    async fn split_at_once(&self, address: &str, key: &[u8]) -> Result<SplitHalves, tonic::Status> {
        let channel = self
            .inner
            .pool
            .channel(address)
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(SplitAtRequest {
            split_key: key.to_vec(),
        });
        request.set_timeout(Duration::from_millis(SPLIT_AT_CALL_TIMEOUT_MS));
        let reply = CoordinatorClient::new(channel)
            .split_at(request)
            .await?
            .into_inner();
        let right = reply
            .right
            .ok_or_else(|| tonic::Status::internal("SplitAt answered without a right half"))?;
        Ok(SplitHalves {
            left: reply.left,
            right,
        })
    }

    /// Drops the cached routes of the halves, so the next request locates
    /// each afresh instead of meeting an epoch mismatch first.
    fn forget_split_region(&self, halves: &SplitHalves) {
        for region in halves.left.iter().chain([&halves.right]) {
            self.forget_region(region.region_id);
        }
    }

    fn no_coordinator(&self, last_error: String) -> RaftstoreError {
        RaftstoreError::NoCoordinatorReachable {
            addresses: self.inner.coordinators.clone(),
            last_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_request_stops_the_round_over_coordinators() {
        assert!(retryable(Code::FailedPrecondition), "a standby's redirect");
        assert!(retryable(Code::Unavailable));
        assert!(retryable(Code::DeadlineExceeded));
        assert!(!retryable(Code::InvalidArgument));
    }

    #[tokio::test]
    async fn without_a_reachable_coordinator_split_at_fails_typed() {
        // No coordinator to ask: a typed error at once, no waiting.
        let client = RegionClient::new(Vec::new());
        let error = client.split_at(b"k").await.expect_err("nobody to ask");
        assert!(
            matches!(error, RaftstoreError::NoCoordinatorReachable { .. }),
            "{error}"
        );
    }
}
