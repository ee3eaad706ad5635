//! The byte format of a region snapshot: the applied state plus every lock
//! and write record of the region's key range, as stored.
//!
//! ```text
//! magic "ARSN" | format version (u32 BE) | header length (u32 BE) | header (JSON)
//! then per record: family (u8: 1 lock, 2 write) | key length (u32 BE) | key
//!                  | value length (u32 BE) | value
//! ```
//! The format is versioned. Version 1 carried plain (non-MVCC) pairs and is
//! refused, like the stores that wrote it.

use openraft::{BasicNode, LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::types::{RegionId, StoreId};

pub const SNAPSHOT_MAGIC: &[u8; 4] = b"ARSN";
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;

/// Family tags of the records in a snapshot.
const FAMILY_LOCK: u8 = 1;
const FAMILY_WRITE: u8 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub region_id: RegionId,
    pub last_applied: Option<LogId<StoreId>>,
    pub membership: StoredMembership<StoreId, BasicNode>,
    pub key_count: u64,
    /// The region's applied GC safe point (absent in snapshots from before
    /// GC existed: nothing was collected).
    #[serde(default)]
    pub gc_safe_point: u64,
    #[serde(with = "crate::command::hex_bytes")]
    pub start_key: Vec<u8>,
    #[serde(with = "crate::command::hex_bytes")]
    pub end_key: Vec<u8>,
    /// The region descriptor at `last_applied` (`keys::encode_descriptor`),
    /// absent in snapshots of stores from before splits existed.
    #[serde(default, with = "optional_hex_bytes")]
    pub descriptor: Option<Vec<u8>>,
    /// The merge the region is frozen for at `last_applied` (absent when
    /// it is not, and in snapshots from before merges existed), so a
    /// replica restored from it is frozen too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<crate::operation::merge::MergeState>,
}

mod optional_hex_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Hex(#[serde(with = "crate::command::hex_bytes")] Vec<u8>);

    pub fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        bytes.as_ref().map(|b| Hex(b.clone())).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<Hex>::deserialize(deserializer)?.map(|hex| hex.0))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegionSnapshot {
    pub header: SnapshotHeader,
    /// Lock column family pairs, in key order.
    pub locks: Vec<(Vec<u8>, Vec<u8>)>,
    /// Write column family pairs, in key order.
    pub writes: Vec<(Vec<u8>, Vec<u8>)>,
}

pub fn encode(snapshot: &RegionSnapshot) -> Vec<u8> {
    let header =
        serde_json::to_vec(&snapshot.header).expect("a snapshot header always serializes to JSON");
    let families = [
        (FAMILY_LOCK, &snapshot.locks),
        (FAMILY_WRITE, &snapshot.writes),
    ];
    let pairs_bytes: usize = families
        .iter()
        .flat_map(|(_, pairs)| pairs.iter())
        .map(|(k, v)| 9 + k.len() + v.len())
        .sum();
    let mut bytes = Vec::with_capacity(12 + header.len() + pairs_bytes);
    bytes.extend_from_slice(SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_be_bytes());
    put_chunk(&mut bytes, &header);
    for (family, pairs) in families {
        for (key, value) in pairs {
            bytes.push(family);
            put_chunk(&mut bytes, key);
            put_chunk(&mut bytes, value);
        }
    }
    bytes
}

fn put_chunk(bytes: &mut Vec<u8>, chunk: &[u8]) {
    let length =
        u32::try_from(chunk.len()).expect("keys, values and headers are capped far below 4 GiB");
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(chunk);
}

/// Why snapshot bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDecodeError(pub String);

impl std::fmt::Display for SnapshotDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "region snapshot: {}", self.0)
    }
}

impl std::error::Error for SnapshotDecodeError {}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], SnapshotDecodeError> {
        if self.bytes.len() < length {
            return Err(SnapshotDecodeError(format!(
                "truncated: wanted {length} bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, SnapshotDecodeError> {
        let bytes: [u8; 4] = self
            .take(4)?
            .try_into()
            .expect("take(4) returns four bytes");
        Ok(u32::from_be_bytes(bytes))
    }

    fn chunk(&mut self) -> Result<&'a [u8], SnapshotDecodeError> {
        let length = self.u32()? as usize;
        self.take(length)
    }
}

pub fn decode(bytes: &[u8]) -> Result<RegionSnapshot, SnapshotDecodeError> {
    let mut reader = Reader { bytes };
    if reader.take(4)? != SNAPSHOT_MAGIC {
        return Err(SnapshotDecodeError("bad magic".into()));
    }
    let version = reader.u32()?;
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotDecodeError(format!(
            "unknown format version {version}"
        )));
    }
    let header: SnapshotHeader = serde_json::from_slice(reader.chunk()?)
        .map_err(|e| SnapshotDecodeError(format!("header: {e}")))?;
    let (mut locks, mut writes) = (Vec::new(), Vec::new());
    while !reader.bytes.is_empty() {
        let family = reader.take(1)?[0];
        let key = reader.chunk()?.to_vec();
        let value = reader.chunk()?.to_vec();
        match family {
            FAMILY_LOCK => locks.push((key, value)),
            FAMILY_WRITE => writes.push((key, value)),
            other => {
                return Err(SnapshotDecodeError(format!(
                    "unknown record family {other}"
                )))
            }
        }
    }
    Ok(RegionSnapshot {
        header,
        locks,
        writes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RegionSnapshot {
        RegionSnapshot {
            header: SnapshotHeader {
                region_id: 3,
                last_applied: Some(LogId::new(openraft::CommittedLeaderId::new(2, 1), 17)),
                membership: StoredMembership::default(),
                key_count: 2,
                gc_safe_point: 7 << 18,
                start_key: b"a".to_vec(),
                end_key: Vec::new(),
                descriptor: Some(vec![1, 2, 3]),
                merge: None,
            },
            locks: vec![(b"a".to_vec(), b"lock".to_vec())],
            writes: vec![
                (b"a\x00\x01".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), Vec::new()),
            ],
        }
    }

    #[test]
    fn snapshots_round_trip() {
        let snapshot = sample();
        assert_eq!(decode(&encode(&snapshot)), Ok(snapshot));
        let empty = RegionSnapshot {
            locks: Vec::new(),
            writes: Vec::new(),
            ..sample()
        };
        assert_eq!(decode(&encode(&empty)), Ok(empty));
    }

    #[test]
    fn a_frozen_region_s_merge_state_travels_in_its_snapshot() {
        let state = crate::operation::merge::MergeState {
            target_region_id: 9,
            target: arbor_proto::RegionDescriptor {
                region_id: 9,
                end_key: b"a".to_vec(),
                ..Default::default()
            },
            prepare_index: 17,
        };
        let mut frozen = sample();
        frozen.header.merge = Some(state.clone());
        let decoded = decode(&encode(&frozen)).expect("a frozen snapshot decodes");
        assert_eq!(decoded.header.merge, Some(state));
        assert_eq!(
            decode(&encode(&sample())).expect("decodes").header.merge,
            None,
            "an unfrozen region's snapshot carries no merge state"
        );
    }

    #[test]
    fn headers_without_a_descriptor_still_decode() {
        let old = r#"{"region_id":3,"last_applied":null,"membership":{"log_id":null,"membership":{"configs":[],"nodes":{}}},"key_count":0,"start_key":"61","end_key":""}"#;
        let header: SnapshotHeader = serde_json::from_str(old).expect("an old header decodes");
        assert_eq!(header.descriptor, None);
    }

    #[test]
    fn damaged_snapshots_are_rejected() {
        let bytes = encode(&sample());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"XXXX").is_err());
        let mut wrong_version = bytes.clone();
        wrong_version[7] = 1;
        assert!(
            decode(&wrong_version).is_err(),
            "format 1 (plain pairs) is refused"
        );
        let mut wrong_family = encode(&RegionSnapshot {
            locks: Vec::new(),
            writes: Vec::new(),
            ..sample()
        });
        wrong_family.extend_from_slice(&[9, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(decode(&wrong_family).is_err());
    }
}
