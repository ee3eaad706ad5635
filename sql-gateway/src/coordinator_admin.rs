//! `UnsplitAt` asked of the coordinators (what `ALTER TABLE ... UNSPLIT AT`
//! calls), the way the region client asks `SplitAt`: only the lease holder
//! serves it; a standby answers that it is not the holder, so each round
//! asks every coordinator in turn, then pauses, until a deadline.
//!
//! It lives here rather than next to `RegionClient::split_at` in
//! `arbor_raftstore` only because that crate belongs to the store side; the
//! behaviour (deadlines, which failures move on to the next coordinator)
//! is the same, so the two can be joined later without a visible change.

use std::time::Duration;

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::{RegionDescriptor, UnsplitAtRequest};
use tokio::time::Instant;
use tonic::transport::Endpoint;
use tonic::Code;

use crate::error::GatewayError;

/// One `UnsplitAt` call gives up after this long: above the coordinator's
/// own deadline for a merge (20 s), so the coordinator answers first.
pub(crate) const UNSPLIT_AT_CALL_TIMEOUT_MS: u64 = 25_000;
/// An `unsplit_at` gives up after this long in all.
pub(crate) const UNSPLIT_AT_DEADLINE_MS: u64 = 60_000;
/// Connecting to one coordinator; a dead one costs no more than this.
pub(crate) const COORDINATOR_CONNECT_TIMEOUT_MS: u64 = 500;
/// Pause between rounds over every coordinator (doubling up to the max),
/// e.g. while a new lease holder takes over.
pub(crate) const UNSPLIT_AT_BACKOFF_MIN_MS: u64 = 50;
pub(crate) const UNSPLIT_AT_BACKOFF_MAX_MS: u64 = 1_000;

const _: () = assert!(UNSPLIT_AT_BACKOFF_MIN_MS <= UNSPLIT_AT_BACKOFF_MAX_MS);
const _: () = assert!(UNSPLIT_AT_CALL_TIMEOUT_MS < UNSPLIT_AT_DEADLINE_MS);

/// Whether a failed call is worth sending to the next coordinator:
/// everything but a refusal of the request itself (a standby's redirect is
/// `FailedPrecondition`).
fn retryable(code: Code) -> bool {
    !matches!(code, Code::InvalidArgument)
}

/// Merges the region starting at `key` into its left neighbour and answers
/// the region holding `key` afterwards. Errors map as `SPLIT AT`'s do: a
/// refused request is internal (the gateway built a bad key, or the two
/// regions cannot merge), no coordinator finishing it in time is 57P03.
pub(crate) async fn unsplit_at(
    coordinators: &[String],
    key: &[u8],
) -> Result<RegionDescriptor, GatewayError> {
    let deadline = Instant::now() + Duration::from_millis(UNSPLIT_AT_DEADLINE_MS);
    let mut backoff_ms = UNSPLIT_AT_BACKOFF_MIN_MS;
    let mut last_error = String::from("no coordinator addresses configured");
    loop {
        for address in coordinators {
            match unsplit_at_once(address, key).await {
                Ok(region) => return Ok(region),
                Err(status) if !retryable(status.code()) => {
                    return Err(GatewayError::Internal {
                        message: format!("unsplit at {key:?}: {}", status.message()),
                    })
                }
                Err(status) => {
                    last_error = format!("{address}: {:?}: {}", status.code(), status.message())
                }
            }
        }
        if coordinators.is_empty() || Instant::now() + Duration::from_millis(backoff_ms) >= deadline
        {
            return Err(GatewayError::StorageUnavailable {
                reason: format!(
                    "no coordinator of {coordinators:?} merged at {key:?}: {last_error}"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(UNSPLIT_AT_BACKOFF_MAX_MS);
    }
}

async fn unsplit_at_once(address: &str, key: &[u8]) -> Result<RegionDescriptor, tonic::Status> {
    let uri = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let channel = Endpoint::from_shared(uri)
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?
        .connect_timeout(Duration::from_millis(COORDINATOR_CONNECT_TIMEOUT_MS))
        .timeout(Duration::from_millis(UNSPLIT_AT_CALL_TIMEOUT_MS))
        .connect()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let reply = CoordinatorClient::new(channel)
        .unsplit_at(UnsplitAtRequest { key: key.to_vec() })
        .await?
        .into_inner();
    reply
        .region
        .ok_or_else(|| tonic::Status::internal("UnsplitAt answered without a region"))
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
    async fn without_a_coordinator_unsplit_at_is_unavailable_at_once() {
        let error = unsplit_at(&[], b"k").await.expect_err("nobody to ask");
        assert!(
            matches!(error, GatewayError::StorageUnavailable { .. }),
            "{error}"
        );
    }
}
