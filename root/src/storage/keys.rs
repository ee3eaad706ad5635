//! Every on-disk key of a root peer, in one place.
//!
//! Column families:
//! - `log`: raft log index (u64 BE) -> JSON openraft entry.
//! - `meta`: raft vote, committed log id, last purged log id.
//! - `state`: the applied state and the current snapshot.
//! - `events`: cursor (u64 BE) -> prost `RootEventRecord`, bounded retention.

pub const CF_LOG: &str = "log";
pub const CF_META: &str = "meta";
pub const CF_STATE: &str = "state";
pub const CF_EVENTS: &str = "events";
pub const COLUMN_FAMILIES: [&str; 4] = [CF_LOG, CF_META, CF_STATE, CF_EVENTS];

pub const META_VOTE: &[u8] = b"vote";
pub const META_COMMITTED: &[u8] = b"committed";
pub const META_LAST_PURGED: &[u8] = b"last_purged";

pub const STATE_APPLIED: &[u8] = b"applied";
pub const STATE_SNAPSHOT: &[u8] = b"snapshot";
/// Cursor from which every accepted event is in the events column family
/// (u64 BE). Earlier ones were trimmed, or arrived inside a snapshot.
pub const STATE_EVENTS_FROM: &[u8] = b"events_from";

/// Events kept queryable after log compaction; older ones are trimmed.
pub const EVENTS_RETAINED_MAX: u64 = 10_000;

pub fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn index_from_key(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_round_trip_and_sort_numerically() {
        let indexes = [0u64, 1, 255, 256, 65_535, u64::MAX / 2, u64::MAX];
        for pair in indexes.windows(2) {
            assert!(index_key(pair[0]) < index_key(pair[1]));
        }
        for index in indexes {
            assert_eq!(index_from_key(&index_key(index)), Some(index));
        }
        assert_eq!(index_from_key(b"short"), None);
    }
}
