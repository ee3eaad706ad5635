//! What a region's raft log carries: one [`RegionCommand`] per transaction
//! command ([`crate::txn::TxnCommand`]) or admin operation (split, peer
//! change, GC, merge prepare and commit), and the
//! [`RegionResponse`] its apply produces.
//!
//! Byte strings are stored as hex inside the JSON entry: half the size of
//! serde's default array of numbers, and still readable in a log dump.
//!
//! Format versions: 1 was a plain write batch without an epoch, 2 added the
//! epoch and admin commands; both wrote plain (non-MVCC) data and are
//! refused at apply (`unsupported_format`), never half-understood. A store
//! of that era is refused at open anyway (see `storage::open_db`). 3 is the
//! MVCC format: a transaction command or an admin command, with the epoch
//! it was admitted at.

use arbor_proto::{
    Mutation, MutationCondition, MutationOp, RegionDescriptor, RegionEpoch, RegionPeer,
};
use serde::{Deserialize, Serialize};

use crate::error::RaftstoreError;
use crate::txn::{CommandMutation, Condition, MutationKind, TxnCommand, TxnOutcome};

/// The encoding of [`RegionCommand`] this code writes.
pub const COMMAND_FORMAT_VERSION: u32 = 3;
/// The oldest encoding apply still understands.
pub const COMMAND_FORMAT_VERSION_MIN: u32 = 3;

const _: () = assert!(COMMAND_FORMAT_VERSION_MIN <= COMMAND_FORMAT_VERSION);

/// True when apply understands commands written in `format_version`.
pub fn format_supported(format_version: u32) -> bool {
    (COMMAND_FORMAT_VERSION_MIN..=COMMAND_FORMAT_VERSION).contains(&format_version)
}

/// A region epoch as stored in the log (the proto type has no serde).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EpochRecord {
    pub version: u64,
    pub conf_ver: u64,
}

impl EpochRecord {
    pub fn of(epoch: Option<&RegionEpoch>) -> Self {
        let epoch = epoch.copied().unwrap_or_default();
        Self {
            version: epoch.version,
            conf_ver: epoch.conf_ver,
        }
    }

    pub fn to_proto(self) -> RegionEpoch {
        RegionEpoch {
            version: self.version,
            conf_ver: self.conf_ver,
        }
    }
}

/// A region peer as stored in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub peer_id: u64,
    pub store_id: u64,
}

/// Split the region at `split_key`: it keeps `[start, split_key)`, region
/// `new_region_id` gets `[split_key, end)` with `new_peers`. Applies only
/// while the region is still at `expected_epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCommand {
    pub expected_epoch: EpochRecord,
    #[serde(with = "hex_bytes")]
    pub split_key: Vec<u8>,
    pub new_region_id: u64,
    pub new_peers: Vec<PeerRecord>,
}

impl SplitCommand {
    pub fn new_peers_proto(&self) -> Vec<RegionPeer> {
        self.new_peers
            .iter()
            .map(|peer| RegionPeer {
                peer_id: peer.peer_id,
                store_id: peer.store_id,
            })
            .collect()
    }
}

/// Record the region's new peers (epoch `conf_ver` + 1) once its raft
/// membership already names exactly their stores as voters (see
/// `operation::conf_change`). Applies only while the region is still at
/// `expected_epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePeersCommand {
    pub expected_epoch: EpochRecord,
    pub peers: Vec<PeerRecord>,
}

impl ChangePeersCommand {
    pub fn peers_proto(&self) -> Vec<RegionPeer> {
        self.peers
            .iter()
            .map(|peer| RegionPeer {
                peer_id: peer.peer_id,
                store_id: peer.store_id,
            })
            .collect()
    }
}

/// Garbage-collect the versions of the keys in `[start_key, end_key)`
/// (empty end = the region's end; clipped to the region as it is at apply)
/// below `safe_point` (see `storage::gc`), and raise the region's applied
/// safe point to it. Every replica deletes the same versions: the decision
/// is a pure function of the versions, identical at the same log index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcCommand {
    pub safe_point: u64,
    #[serde(with = "hex_bytes")]
    pub start_key: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub end_key: Vec<u8>,
}

/// Freeze this (source) region for a merge into `target` (see
/// `operation::merge`): applies only while the region is still at
/// `expected_epoch`, `target` is adjacent and on the same stores. From this
/// entry on the region applies nothing more. The epoch does not move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrepareMergeCommand {
    pub expected_epoch: EpochRecord,
    /// The target as planned.
    #[serde(with = "descriptor_hex")]
    pub target: RegionDescriptor,
}

/// Grow this (target) region over `source`'s range once the local source
/// replica has applied `prepare_index` (see `operation::merge`). Applies
/// only while the region is still at `expected_epoch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitMergeCommand {
    pub expected_epoch: EpochRecord,
    /// The frozen source, as PrepareMerge answered it.
    #[serde(with = "descriptor_hex")]
    pub source: RegionDescriptor,
    pub prepare_index: u64,
}

/// Commands that change the region itself rather than its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdminCommand {
    Split(SplitCommand),
    ChangePeers(ChangePeersCommand),
    Gc(GcCommand),
    PrepareMerge(PrepareMergeCommand),
    CommitMerge(CommitMergeCommand),
}

/// Converts a wire mutation; unknown enum values are the caller's error.
pub fn mutation_from_proto(mutation: &Mutation) -> Result<CommandMutation, RaftstoreError> {
    let kind = match MutationOp::try_from(mutation.op) {
        Ok(MutationOp::Put) => MutationKind::Put,
        Ok(MutationOp::Delete) => MutationKind::Delete,
        Ok(MutationOp::Lock) => MutationKind::Lock,
        Ok(MutationOp::PessimisticLock) => {
            return Err(RaftstoreError::InvalidArgument {
                hint: "a pessimistic lock is taken by PessimisticLock, not written by a \
                       mutation"
                    .into(),
            })
        }
        Err(_) => {
            return Err(RaftstoreError::InvalidArgument {
                hint: format!("unknown mutation op {}", mutation.op),
            })
        }
    };
    let condition = match MutationCondition::try_from(mutation.condition) {
        Ok(MutationCondition::None) => Condition::None,
        Ok(MutationCondition::MustNotExist) => Condition::MustNotExist,
        Ok(MutationCondition::MustExist) => Condition::MustExist,
        Err(_) => {
            return Err(RaftstoreError::InvalidArgument {
                hint: format!("unknown mutation condition {}", mutation.condition),
            })
        }
    };
    let value = match kind {
        MutationKind::Put => mutation.value.clone(),
        MutationKind::Delete | MutationKind::Lock | MutationKind::PessimisticLock => Vec::new(),
    };
    Ok(CommandMutation {
        kind,
        key: mutation.key.clone(),
        value,
        condition,
    })
}

/// The wire op of a mutation kind.
pub fn mutation_op(kind: MutationKind) -> MutationOp {
    match kind {
        MutationKind::Put => MutationOp::Put,
        MutationKind::Delete => MutationOp::Delete,
        MutationKind::Lock => MutationOp::Lock,
        MutationKind::PessimisticLock => MutationOp::PessimisticLock,
    }
}

/// One transaction command or one admin command of a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionCommand {
    pub format_version: u32,
    /// The epoch the command was admitted at; apply refuses it when the
    /// region has moved on since (a split in between).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<EpochRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<TxnCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminCommand>,
}

impl RegionCommand {
    /// A transaction command admitted at `epoch`.
    pub fn txn(command: TxnCommand, epoch: EpochRecord) -> Self {
        Self {
            format_version: COMMAND_FORMAT_VERSION,
            epoch: Some(epoch),
            txn: Some(command),
            admin: None,
        }
    }

    pub fn split(split: SplitCommand) -> Self {
        Self {
            format_version: COMMAND_FORMAT_VERSION,
            epoch: Some(split.expected_epoch),
            txn: None,
            admin: Some(AdminCommand::Split(split)),
        }
    }
}

impl RegionCommand {
    /// A GC batch; it carries no epoch: it applies to whatever part of its
    /// key range the region holds when it applies.
    pub fn gc(gc: GcCommand) -> Self {
        Self {
            format_version: COMMAND_FORMAT_VERSION,
            epoch: None,
            txn: None,
            admin: Some(AdminCommand::Gc(gc)),
        }
    }

    pub fn change_peers(change: ChangePeersCommand) -> Self {
        Self {
            format_version: COMMAND_FORMAT_VERSION,
            epoch: Some(change.expected_epoch),
            txn: None,
            admin: Some(AdminCommand::ChangePeers(change)),
        }
    }

    pub fn prepare_merge(prepare: PrepareMergeCommand) -> Self {
        Self {
            format_version: COMMAND_FORMAT_VERSION,
            epoch: Some(prepare.expected_epoch),
            txn: None,
            admin: Some(AdminCommand::PrepareMerge(prepare)),
        }
    }

    pub fn commit_merge(commit: CommitMergeCommand) -> Self {
        Self {
            format_version: COMMAND_FORMAT_VERSION,
            epoch: Some(commit.expected_epoch),
            txn: None,
            admin: Some(AdminCommand::CommitMerge(commit)),
        }
    }
}

/// What applying a PrepareMerge produced.
#[derive(Debug, Clone, PartialEq)]
pub enum PrepareMergeOutcome {
    /// The source is frozen for the target (now, or by an earlier identical
    /// command) since log index `prepare_index`.
    Frozen {
        source: RegionDescriptor,
        prepare_index: u64,
    },
    /// The source is not at the epoch the merge expected.
    EpochNotMatch { current: RegionDescriptor },
    /// The merge can never apply (not adjacent, other stores).
    Invalid { hint: String },
}

/// What applying a CommitMerge produced.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitMergeOutcome {
    /// The target covers the source's range (now, or already before).
    Merged { region: RegionDescriptor },
    /// The target is not at the epoch the merge expected.
    EpochNotMatch { current: RegionDescriptor },
    /// The merge can never apply (not adjacent, other stores, the source
    /// here frozen for another target).
    Invalid { hint: String },
}

/// What applying a peer change produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangePeersOutcome {
    /// The descriptor lists the new peers (now, or by an earlier identical
    /// command).
    Changed { region: RegionDescriptor },
    /// The region is not at the epoch the change expected.
    EpochNotMatch { current: RegionDescriptor },
    /// The raft membership does not (yet) name exactly these peers' stores.
    Invalid { hint: String },
}

/// What applying a split produced.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitOutcome {
    /// The region is split (now, or by an earlier identical command).
    Split {
        left: RegionDescriptor,
        right: RegionDescriptor,
    },
    /// The region is not at the epoch the split expected.
    EpochNotMatch { current: RegionDescriptor },
    /// The command cannot apply to this region (key outside, id taken).
    Invalid { hint: String },
}

/// The outcome of applying one entry. (Responses never leave the process,
/// so the fields openraft's serde bound cannot encode are skipped.)
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RegionResponse {
    /// The command was written in a format this code cannot apply; nothing
    /// was written.
    #[serde(default)]
    pub unsupported_format: bool,
    /// The command was admitted at an older epoch or touches keys outside
    /// the region as it is now; nothing was written. Carries the current
    /// region.
    #[serde(skip)]
    pub epoch_not_match: Option<RegionDescriptor>,
    /// Set for a transaction command.
    #[serde(skip)]
    pub txn: Option<TxnOutcome>,
    /// Set for a split command.
    #[serde(skip)]
    pub split: Option<SplitOutcome>,
    /// Set for a peer change command.
    #[serde(skip)]
    pub change_peers: Option<ChangePeersOutcome>,
    /// Set for a GC command: how many versions it deleted.
    #[serde(skip)]
    pub gc_deleted: Option<u64>,
    /// The region is frozen for a merge into this target region: the
    /// command was refused and nothing but the applied index was written.
    #[serde(skip)]
    pub merging: Option<u64>,
    /// Set for a PrepareMerge command.
    #[serde(skip)]
    pub prepare_merge: Option<PrepareMergeOutcome>,
    /// Set for a CommitMerge command.
    #[serde(skip)]
    pub commit_merge: Option<CommitMergeOutcome>,
}

pub(crate) mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::encode_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        super::decode_hex(&text).ok_or_else(|| D::Error::custom("invalid hex byte string"))
    }
}

/// A region descriptor as the hex of `keys::encode_descriptor` (the proto
/// type has no serde).
pub(crate) mod descriptor_hex {
    use arbor_proto::RegionDescriptor;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        descriptor: &RegionDescriptor,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let bytes = crate::keys::encode_descriptor(descriptor);
        serializer.serialize_str(&super::encode_hex(&bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<RegionDescriptor, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let bytes =
            super::decode_hex(&text).ok_or_else(|| D::Error::custom("invalid hex byte string"))?;
        crate::keys::decode_descriptor(&bytes).map_err(|e| D::Error::custom(e.to_string()))
    }
}

/// A list of byte strings as a list of hex strings.
pub(crate) mod hex_bytes_list {
    use serde::{de::Error, ser::SerializeSeq, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        let mut sequence = serializer.serialize_seq(Some(list.len()))?;
        for bytes in list {
            sequence.serialize_element(&super::encode_hex(bytes))?;
        }
        sequence.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let texts = Vec::<std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| {
                super::decode_hex(text).ok_or_else(|| D::Error::custom("invalid hex byte string"))
            })
            .collect()
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[(byte >> 4) as usize] as char);
        text.push(DIGITS[(byte & 0x0f) as usize] as char);
    }
    text
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    }
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::commit::Commit;
    use crate::txn::prewrite::Prewrite;

    fn epoch() -> EpochRecord {
        EpochRecord {
            version: 2,
            conf_ver: 1,
        }
    }

    #[test]
    fn transaction_commands_round_trip_through_json_with_hex_bytes() {
        let prewrite = RegionCommand::txn(
            TxnCommand::Prewrite(Prewrite {
                start_ts: 7 << 18,
                primary: vec![0, 1, 0xab, 0xff],
                lock_ttl_ms: 3_000,
                mutations: vec![
                    CommandMutation {
                        kind: MutationKind::Put,
                        key: vec![0, 1, 0xab, 0xff],
                        value: b"value".to_vec(),
                        condition: Condition::MustNotExist,
                    },
                    CommandMutation {
                        kind: MutationKind::Lock,
                        key: Vec::new(),
                        value: Vec::new(),
                        condition: Condition::MustExist,
                    },
                ],
                one_pc_commit_ts: Some(8 << 18),
            }),
            epoch(),
        );
        let commit = RegionCommand::txn(
            TxnCommand::Commit(Commit {
                start_ts: 1,
                commit_ts: 2,
                keys: vec![b"k".to_vec(), vec![0xff]],
            }),
            epoch(),
        );
        for command in [prewrite, commit] {
            let json = serde_json::to_string(&command).expect("serializing a command");
            assert!(
                json.contains("\"ff\"") || json.contains("0001abff"),
                "{json}"
            );
            let decoded: RegionCommand = serde_json::from_str(&json).expect("decoding a command");
            assert_eq!(decoded, command);
        }
    }

    #[test]
    fn plain_write_batches_of_older_formats_decode_but_are_not_supported() {
        let old = r#"{"format_version":1,"mutations":[{"kind":"Put","key":"6b","value":"76","condition":"None"}]}"#;
        let decoded: RegionCommand = serde_json::from_str(old).expect("a version-1 entry");
        assert!(!format_supported(decoded.format_version));
        assert_eq!(decoded.txn, None);
        assert_eq!(decoded.admin, None);
        let two = r#"{"format_version":2,"mutations":[],"epoch":{"version":1,"conf_ver":1}}"#;
        let decoded: RegionCommand = serde_json::from_str(two).expect("a version-2 entry");
        assert!(!format_supported(decoded.format_version));
        assert!(format_supported(COMMAND_FORMAT_VERSION));
        assert!(!format_supported(COMMAND_FORMAT_VERSION + 1));
    }

    #[test]
    fn split_commands_round_trip() {
        let command = RegionCommand::split(SplitCommand {
            expected_epoch: EpochRecord {
                version: 1,
                conf_ver: 1,
            },
            split_key: b"m".to_vec(),
            new_region_id: 7,
            new_peers: vec![PeerRecord {
                peer_id: 70,
                store_id: 1,
            }],
        });
        let json = serde_json::to_string(&command).expect("serializing a split");
        let decoded: RegionCommand = serde_json::from_str(&json).expect("decoding a split");
        assert_eq!(decoded, command);
    }

    #[test]
    fn peer_change_commands_round_trip() {
        let command = RegionCommand::change_peers(ChangePeersCommand {
            expected_epoch: EpochRecord {
                version: 3,
                conf_ver: 2,
            },
            peers: vec![PeerRecord {
                peer_id: 14,
                store_id: 4,
            }],
        });
        let json = serde_json::to_string(&command).expect("serializing a peer change");
        let decoded: RegionCommand = serde_json::from_str(&json).expect("decoding a peer change");
        assert_eq!(decoded, command);
    }

    #[test]
    fn gc_commands_round_trip() {
        let command = RegionCommand::gc(GcCommand {
            safe_point: 5 << 18,
            start_key: vec![0, 0xff],
            end_key: Vec::new(),
        });
        let json = serde_json::to_string(&command).expect("serializing a GC command");
        let decoded: RegionCommand = serde_json::from_str(&json).expect("decoding a GC command");
        assert_eq!(decoded, command);
    }

    #[test]
    fn hex_decoding_rejects_odd_length_and_bad_digits() {
        assert_eq!(decode_hex("0a0B"), Some(vec![0x0a, 0x0b]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn wire_mutations_convert_and_unknown_enums_are_rejected() {
        let put = Mutation {
            op: MutationOp::Put as i32,
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            condition: MutationCondition::MustNotExist as i32,
        };
        let converted = mutation_from_proto(&put).expect("valid mutation");
        assert_eq!(converted.kind, MutationKind::Put);
        assert_eq!(converted.condition, Condition::MustNotExist);
        let lock = Mutation {
            op: MutationOp::Lock as i32,
            ..put.clone()
        };
        let converted = mutation_from_proto(&lock).expect("valid lock");
        assert_eq!(
            (converted.kind, converted.value),
            (MutationKind::Lock, Vec::new())
        );
        assert_eq!(mutation_op(MutationKind::Lock), MutationOp::Lock);
        let bad_op = Mutation {
            op: 42,
            ..put.clone()
        };
        assert!(matches!(
            mutation_from_proto(&bad_op),
            Err(RaftstoreError::InvalidArgument { .. })
        ));
        let bad_condition = Mutation {
            condition: 42,
            ..put
        };
        assert!(mutation_from_proto(&bad_condition).is_err());
    }
}
