//! Every on-disk key layout of a store, in one place.
//!
//! One RocksDB per store, five column families (plus RocksDB's `default`,
//! which holds only [`STORE_FORMAT_KEY`]):
//! - [`CF_LOCK`]: user key -> lock record (`crate::txn::record`): the
//!   Percolator lock a transaction holds on the key between prewrite and
//!   commit or rollback. At most one lock per key, so keyed by the user key
//!   itself ([`lock_key`]).
//! - [`CF_WRITE`]: `enc(user key) | !commit_ts (u64 BE)` -> write record
//!   (`crate::txn::record`): one entry per committed version, rollback or
//!   lock record ([`write_key`]). `enc` is the memcomparable escape
//!   ([`encode_user_key`]: 0x00 -> 0x00 0xff, then terminator 0x00 0x01),
//!   which preserves order and is prefix-free, so entries sort by user key
//!   ascending and then newest version first. Values are stored inline.
//!   A region `[start, end)` of user keys is the write range
//!   `[enc(start), enc(end))` ([`write_range_bounds`]).
//! - [`CF_RAFT_LOG`]: `region_id (u64 BE) | index (u64 BE)` -> JSON openraft
//!   entry ([`log_key`]). Big-endian keeps one region's entries contiguous and
//!   in index order.
//! - [`CF_RAFT_STATE`]: `region_id (u64 BE) | kind (u8)` -> JSON: vote,
//!   committed log id, last purged log id, applied state, current snapshot,
//!   the tombstone of a removed replica, the merge a source region is
//!   frozen for and the record of a replica merged away ([`state_key`]).
//! - [`CF_REGION_META`]: `region_id (u64 BE)` -> versioned region descriptor
//!   ([`region_meta_key`], [`encode_descriptor`]).
//!
//! **Invariant:** no other module builds or parses a key by hand.

use arbor_proto::RegionDescriptor;
use prost::Message;

use crate::types::RegionId;

pub const CF_LOCK: &str = "lock";
pub const CF_WRITE: &str = "write";
pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_STATE: &str = "raft_state";
pub const CF_REGION_META: &str = "region_meta";
pub const COLUMN_FAMILIES: [&str; 5] = [
    CF_LOCK,
    CF_WRITE,
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_REGION_META,
];

/// The column family of format-1 stores (plain user key -> value); its
/// presence marks a store this code refuses to open.
pub const CF_DATA_FORMAT_1: &str = "data";
/// Key in the `default` column family holding the store format version.
pub const STORE_FORMAT_KEY: &[u8] = b"arbor-store-format";
/// The store format this code writes: 2 = MVCC (lock and write column
/// families). Format 1 (plain values) is refused, never converted.
pub const STORE_FORMAT_VERSION: u32 = 2;

/// Bytes of the commit timestamp suffix of a write key.
pub const TIMESTAMP_BYTES: usize = 8;
/// The escape byte following 0x00 inside an encoded user key.
const ESCAPE_BYTE: u8 = 0xff;
/// The byte following 0x00 at the end of an encoded user key.
const TERMINATOR_BYTE: u8 = 0x01;

/// Bytes of a region id prefix.
const REGION_PREFIX_BYTES: usize = 8;
/// Bytes of a raft log key: region id then log index.
pub const LOG_KEY_BYTES: usize = REGION_PREFIX_BYTES + 8;
/// Bytes of a raft state key: region id then kind.
pub const STATE_KEY_BYTES: usize = REGION_PREFIX_BYTES + 1;

/// The encoding version written in front of every stored region descriptor.
pub const DESCRIPTOR_FORMAT_VERSION: u8 = 1;

/// What a raft state key holds for its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StateKind {
    Vote = 1,
    Committed = 2,
    LastPurged = 3,
    Applied = 4,
    Snapshot = 5,
    /// The descriptor (encoded like [`encode_descriptor`]) after the peer
    /// change that removed this store's replica: kept after the replica's
    /// log, state and data are gone, so a late heartbeat or `OpenPeer`
    /// naming an older configuration does not bring the replica back.
    Tombstone = 6,
    /// The merge a source region is frozen for (JSON
    /// `operation::merge::MergeState`): written with the applied state of
    /// its PrepareMerge entry; from then on the region applies nothing.
    Merging = 7,
    /// A replica merged away here (JSON `operation::merge::MergedRecord`):
    /// kept after its log and state are gone, so `WaitApplied` can tell
    /// "applied everything, then merged" from "never here".
    Merged = 8,
}

impl StateKind {
    pub const ALL: [StateKind; 8] = [
        StateKind::Vote,
        StateKind::Committed,
        StateKind::LastPurged,
        StateKind::Applied,
        StateKind::Snapshot,
        StateKind::Tombstone,
        StateKind::Merging,
        StateKind::Merged,
    ];

    fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as u8 == byte)
    }
}

/// The lock CF key of a user key: the user key itself (see module doc).
pub fn lock_key(user_key: &[u8]) -> &[u8] {
    user_key
}

/// The memcomparable encoding of a user key: order-preserving and
/// prefix-free (no encoded key is a prefix of another).
pub fn encode_user_key(user_key: &[u8]) -> Vec<u8> {
    let zeros = user_key.iter().filter(|byte| **byte == 0).count();
    let mut encoded = Vec::with_capacity(user_key.len() + zeros + 2);
    for byte in user_key {
        encoded.push(*byte);
        if *byte == 0 {
            encoded.push(ESCAPE_BYTE);
        }
    }
    encoded.extend_from_slice(&[0, TERMINATOR_BYTE]);
    encoded
}

/// Splits `encoded` into the user key it starts with and the bytes after
/// the terminator; `None` if it does not start with a well-formed encoding.
pub fn decode_user_key(encoded: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut user_key = Vec::with_capacity(encoded.len());
    let mut index = 0;
    while index < encoded.len() {
        let byte = encoded[index];
        if byte != 0 {
            user_key.push(byte);
            index += 1;
            continue;
        }
        match encoded.get(index + 1) {
            Some(&ESCAPE_BYTE) => {
                user_key.push(0);
                index += 2;
            }
            Some(&TERMINATOR_BYTE) => return Some((user_key, &encoded[index + 2..])),
            _ => return None,
        }
    }
    None
}

/// The write CF key of `user_key`'s version committed at `commit_ts`.
pub fn write_key(user_key: &[u8], commit_ts: u64) -> Vec<u8> {
    let mut key = encode_user_key(user_key);
    key.extend_from_slice(&(!commit_ts).to_be_bytes());
    key
}

pub fn decode_write_key(key: &[u8]) -> Option<(Vec<u8>, u64)> {
    let (user_key, rest) = decode_user_key(key)?;
    let bytes: [u8; TIMESTAMP_BYTES] = rest.try_into().ok()?;
    Some((user_key, !u64::from_be_bytes(bytes)))
}

/// `[lower, upper)` of the write CF holding every version of every user key
/// in `[start, end)`; `None` upper when `end` is empty (unbounded).
pub fn write_range_bounds(start: &[u8], end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let upper = (!end.is_empty()).then(|| encode_user_key(end));
    (encode_user_key(start), upper)
}

/// A byte string above every key of the lock and write column families
/// (user keys are at most `KEY_BYTES_MAX` bytes; encoding at most doubles
/// them), for range estimates with an open end.
pub fn above_every_data_key() -> Vec<u8> {
    vec![0xff; 2 * crate::config::KEY_BYTES_MAX + 2 + TIMESTAMP_BYTES + 1]
}

pub fn log_key(region_id: RegionId, index: u64) -> [u8; LOG_KEY_BYTES] {
    let mut key = [0u8; LOG_KEY_BYTES];
    key[..REGION_PREFIX_BYTES].copy_from_slice(&region_id.to_be_bytes());
    key[REGION_PREFIX_BYTES..].copy_from_slice(&index.to_be_bytes());
    key
}

/// A key strictly above every log key of `region_id` and below every log key
/// of the next region: the prefix, eight 0xff bytes and one more byte.
pub fn log_key_upper_bound(region_id: RegionId) -> Vec<u8> {
    let mut key = log_key(region_id, u64::MAX).to_vec();
    key.push(0);
    key
}

pub fn decode_log_key(key: &[u8]) -> Option<(RegionId, u64)> {
    let bytes: &[u8; LOG_KEY_BYTES] = key.try_into().ok()?;
    let region_id = u64::from_be_bytes(bytes[..REGION_PREFIX_BYTES].try_into().ok()?);
    let index = u64::from_be_bytes(bytes[REGION_PREFIX_BYTES..].try_into().ok()?);
    Some((region_id, index))
}

pub fn state_key(region_id: RegionId, kind: StateKind) -> [u8; STATE_KEY_BYTES] {
    let mut key = [0u8; STATE_KEY_BYTES];
    key[..REGION_PREFIX_BYTES].copy_from_slice(&region_id.to_be_bytes());
    key[REGION_PREFIX_BYTES] = kind as u8;
    key
}

pub fn decode_state_key(key: &[u8]) -> Option<(RegionId, StateKind)> {
    let bytes: &[u8; STATE_KEY_BYTES] = key.try_into().ok()?;
    let region_id = u64::from_be_bytes(bytes[..REGION_PREFIX_BYTES].try_into().ok()?);
    let kind = StateKind::from_byte(bytes[REGION_PREFIX_BYTES])?;
    Some((region_id, kind))
}

pub fn region_meta_key(region_id: RegionId) -> [u8; REGION_PREFIX_BYTES] {
    region_id.to_be_bytes()
}

pub fn decode_region_meta_key(key: &[u8]) -> Option<RegionId> {
    let bytes: [u8; REGION_PREFIX_BYTES] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// `DESCRIPTOR_FORMAT_VERSION | prost RegionDescriptor`.
pub fn encode_descriptor(descriptor: &RegionDescriptor) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + descriptor.encoded_len());
    bytes.push(DESCRIPTOR_FORMAT_VERSION);
    descriptor
        .encode(&mut bytes)
        .expect("encoding into a Vec cannot run out of space");
    bytes
}

/// Why a stored descriptor did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptorDecodeError {
    Empty,
    UnknownVersion(u8),
    Malformed(String),
}

impl std::fmt::Display for DescriptorDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => write!(f, "empty region descriptor"),
            Self::UnknownVersion(version) => {
                write!(f, "unknown region descriptor format version {version}")
            }
            Self::Malformed(hint) => write!(f, "malformed region descriptor: {hint}"),
        }
    }
}

pub fn decode_descriptor(bytes: &[u8]) -> Result<RegionDescriptor, DescriptorDecodeError> {
    let (version, body) = bytes.split_first().ok_or(DescriptorDecodeError::Empty)?;
    if *version != DESCRIPTOR_FORMAT_VERSION {
        return Err(DescriptorDecodeError::UnknownVersion(*version));
    }
    RegionDescriptor::decode(body).map_err(|e| DescriptorDecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use arbor_proto::{RegionEpoch, RegionPeer};

    use super::*;

    const REGION_IDS: [u64; 5] = [0, 1, 255, 1 << 40, u64::MAX];
    const INDEXES: [u64; 6] = [0, 1, 255, 256, u64::MAX / 2, u64::MAX];

    #[test]
    fn log_keys_round_trip_and_sort_by_region_then_index() {
        let mut previous: Option<[u8; LOG_KEY_BYTES]> = None;
        for region_id in REGION_IDS {
            for index in INDEXES {
                let key = log_key(region_id, index);
                assert_eq!(decode_log_key(&key), Some((region_id, index)));
                if let Some(previous) = previous {
                    assert!(previous < key, "log keys must sort by (region, index)");
                }
                previous = Some(key);
            }
        }
        assert_eq!(decode_log_key(b"short"), None);
    }

    #[test]
    fn log_key_upper_bound_separates_regions() {
        for region_id in [0u64, 1, 1 << 40] {
            let bound = log_key_upper_bound(region_id);
            assert!(log_key(region_id, u64::MAX).as_slice() < bound.as_slice());
            assert!(bound.as_slice() < log_key(region_id + 1, 0).as_slice());
        }
        let last = log_key_upper_bound(u64::MAX);
        assert!(log_key(u64::MAX, u64::MAX).as_slice() < last.as_slice());
    }

    #[test]
    fn state_keys_round_trip_for_every_kind() {
        for region_id in REGION_IDS {
            for kind in StateKind::ALL {
                let key = state_key(region_id, kind);
                assert_eq!(decode_state_key(&key), Some((region_id, kind)));
            }
        }
        let mut unknown = state_key(7, StateKind::Vote);
        unknown[STATE_KEY_BYTES - 1] = 0xee;
        assert_eq!(decode_state_key(&unknown), None);
        assert_eq!(decode_state_key(b"x"), None);
    }

    #[test]
    fn region_meta_keys_round_trip() {
        for region_id in REGION_IDS {
            assert_eq!(
                decode_region_meta_key(&region_meta_key(region_id)),
                Some(region_id)
            );
        }
        assert_eq!(decode_region_meta_key(b"123"), None);
    }

    #[test]
    fn lock_key_is_the_user_key() {
        assert_eq!(lock_key(b"users/42"), b"users/42");
        assert_eq!(lock_key(b""), b"");
    }

    /// Every byte string of length 0..=3 over an alphabet with the bytes
    /// the encoding treats specially.
    fn generated_user_keys() -> Vec<Vec<u8>> {
        let alphabet = [0x00u8, 0x01, 0x02, 0x7f, 0xfe, 0xff];
        let mut keys = vec![Vec::new()];
        let mut layer = vec![Vec::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for prefix in &layer {
                for byte in alphabet {
                    let mut key: Vec<u8> = prefix.clone();
                    key.push(byte);
                    next.push(key);
                }
            }
            keys.extend(next.iter().cloned());
            layer = next;
        }
        keys
    }

    #[test]
    fn encoded_user_keys_round_trip_keep_order_and_are_prefix_free() {
        let keys = generated_user_keys();
        for a in &keys {
            let encoded = encode_user_key(a);
            assert_eq!(
                decode_user_key(&encoded),
                Some((a.clone(), &[][..])),
                "{a:?}"
            );
            for b in &keys {
                let other = encode_user_key(b);
                assert_eq!(a.cmp(b), encoded.cmp(&other), "{a:?} vs {b:?}");
                if a != b {
                    assert!(!other.starts_with(&encoded), "{a:?} prefixes {b:?}");
                }
            }
        }
        assert_eq!(decode_user_key(&[0x61, 0x00]), None, "truncated");
        assert_eq!(decode_user_key(&[0x00, 0x05]), None, "bad escape");
    }

    #[test]
    fn write_keys_sort_by_user_key_then_newest_version_first() {
        let keys = generated_user_keys();
        let timestamps = [0u64, 1, 2, 1 << 18, u64::MAX - 1, u64::MAX];
        let mut versions = Vec::new();
        for key in &keys {
            for ts in timestamps {
                versions.push((key.clone(), ts));
            }
        }
        let mut by_bytes = versions.clone();
        by_bytes.sort_by_key(|(key, ts)| write_key(key, *ts));
        let mut by_meaning = versions;
        by_meaning.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        assert_eq!(by_bytes, by_meaning);
        for (key, ts) in &by_bytes {
            assert_eq!(
                decode_write_key(&write_key(key, *ts)),
                Some((key.clone(), *ts))
            );
        }
        assert_eq!(decode_write_key(&encode_user_key(b"k")), None);
    }

    #[test]
    fn a_region_range_holds_exactly_the_versions_of_its_user_keys() {
        let keys = generated_user_keys();
        let ranges = [
            (vec![], vec![]),
            (vec![0x00], vec![0x01]),
            (vec![0x01, 0x00], vec![0xff]),
        ];
        for (start, end) in ranges {
            let (lower, upper) = write_range_bounds(&start, &end);
            for key in &keys {
                let inside = key >= &start && (end.is_empty() || key < &end);
                for ts in [0u64, 7, u64::MAX] {
                    let encoded = write_key(key, ts);
                    let in_bounds =
                        encoded >= lower && upper.as_ref().is_none_or(|upper| &encoded < upper);
                    assert_eq!(inside, in_bounds, "{key:?}@{ts} in [{start:?}, {end:?})");
                    assert!(encoded < above_every_data_key());
                }
            }
        }
    }

    #[test]
    fn descriptors_round_trip_with_version_prefix() {
        let descriptor = RegionDescriptor {
            region_id: 9,
            start_key: b"a".to_vec(),
            end_key: b"m".to_vec(),
            epoch: Some(RegionEpoch {
                version: 3,
                conf_ver: 2,
            }),
            peers: vec![RegionPeer {
                peer_id: 90,
                store_id: 1,
            }],
        };
        let bytes = encode_descriptor(&descriptor);
        assert_eq!(bytes[0], DESCRIPTOR_FORMAT_VERSION);
        assert_eq!(decode_descriptor(&bytes), Ok(descriptor));
        assert_eq!(decode_descriptor(&[]), Err(DescriptorDecodeError::Empty));
        assert_eq!(
            decode_descriptor(&[99, 1, 2]),
            Err(DescriptorDecodeError::UnknownVersion(99))
        );
        assert!(matches!(
            decode_descriptor(&[DESCRIPTOR_FORMAT_VERSION, 0xff, 0xff]),
            Err(DescriptorDecodeError::Malformed(_))
        ));
    }
}
