//! Every on-disk key layout of a store, in one place.
//!
//! One RocksDB per store, four column families:
//! - [`CF_DATA`]: user key -> value. Regions own disjoint key ranges, so the
//!   data of every region shares one column family keyed by the user key
//!   itself ([`data_key`]); a region's data is the range `[start, end)`.
//! - [`CF_RAFT_LOG`]: `region_id (u64 BE) | index (u64 BE)` -> JSON openraft
//!   entry ([`log_key`]). Big-endian keeps one region's entries contiguous and
//!   in index order.
//! - [`CF_RAFT_STATE`]: `region_id (u64 BE) | kind (u8)` -> JSON: vote,
//!   committed log id, last purged log id, applied state, current snapshot
//!   ([`state_key`]).
//! - [`CF_REGION_META`]: `region_id (u64 BE)` -> versioned region descriptor
//!   ([`region_meta_key`], [`encode_descriptor`]).
//!
//! **Invariant:** no other module builds or parses a key by hand.

use arbor_proto::RegionDescriptor;
use prost::Message;

use crate::types::RegionId;

pub const CF_DATA: &str = "data";
pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_STATE: &str = "raft_state";
pub const CF_REGION_META: &str = "region_meta";
pub const COLUMN_FAMILIES: [&str; 4] = [CF_DATA, CF_RAFT_LOG, CF_RAFT_STATE, CF_REGION_META];

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
}

impl StateKind {
    pub const ALL: [StateKind; 5] = [
        StateKind::Vote,
        StateKind::Committed,
        StateKind::LastPurged,
        StateKind::Applied,
        StateKind::Snapshot,
    ];

    fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| *kind as u8 == byte)
    }
}

/// The data CF key of a user key: the user key itself (see module doc).
pub fn data_key(user_key: &[u8]) -> &[u8] {
    user_key
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
    fn data_key_is_the_user_key() {
        assert_eq!(data_key(b"users/42"), b"users/42");
        assert_eq!(data_key(b""), b"");
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
