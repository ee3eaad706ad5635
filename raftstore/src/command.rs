//! What a region's raft log carries: one [`RegionCommand`] per client write,
//! and the [`RegionResponse`] its apply produces.
//!
//! Byte strings are stored as hex inside the JSON entry: half the size of
//! serde's default array of numbers, and still readable in a log dump.

use arbor_proto::{Mutation, MutationCondition, MutationOp};
use serde::{Deserialize, Serialize};

use crate::error::RaftstoreError;

/// The encoding of [`RegionCommand`] this code writes; apply refuses others.
pub const COMMAND_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MutationKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    None,
    MustNotExist,
    MustExist,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMutation {
    pub kind: MutationKind,
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
    pub condition: Condition,
}

impl CommandMutation {
    /// Converts a wire mutation; unknown enum values are the caller's error.
    pub fn from_proto(mutation: &Mutation) -> Result<Self, RaftstoreError> {
        let kind = match MutationOp::try_from(mutation.op) {
            Ok(MutationOp::Put) => MutationKind::Put,
            Ok(MutationOp::Delete) => MutationKind::Delete,
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
            MutationKind::Delete => Vec::new(),
        };
        Ok(Self {
            kind,
            key: mutation.key.clone(),
            value,
            condition,
        })
    }
}

/// One atomic, conditional write batch of one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionCommand {
    pub format_version: u32,
    pub mutations: Vec<CommandMutation>,
}

impl RegionCommand {
    pub fn new(mutations: Vec<CommandMutation>) -> Self {
        Self {
            format_version: COMMAND_FORMAT_VERSION,
            mutations,
        }
    }
}

/// The outcome of applying one entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RegionResponse {
    /// False when a condition failed (then nothing was written).
    pub applied: bool,
    /// Index of the first failed condition when `!applied`.
    pub failed_mutation: u32,
    /// Per mutation: whether its key existed just before it was applied.
    pub existed: Vec<bool>,
    /// The command was written in a format this code cannot apply; nothing
    /// was written.
    #[serde(default)]
    pub unsupported_format: bool,
}

pub(crate) mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = String::with_capacity(bytes.len() * 2);
        for byte in bytes {
            text.push(DIGITS[(byte >> 4) as usize] as char);
            text.push(DIGITS[(byte & 0x0f) as usize] as char);
        }
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        super::decode_hex(&text).ok_or_else(|| D::Error::custom("invalid hex byte string"))
    }
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

    #[test]
    fn commands_round_trip_through_json_with_hex_bytes() {
        let command = RegionCommand::new(vec![
            CommandMutation {
                kind: MutationKind::Put,
                key: vec![0, 1, 0xab, 0xff],
                value: b"value".to_vec(),
                condition: Condition::MustNotExist,
            },
            CommandMutation {
                kind: MutationKind::Delete,
                key: Vec::new(),
                value: Vec::new(),
                condition: Condition::MustExist,
            },
        ]);
        let json = serde_json::to_string(&command).expect("serializing a command");
        assert!(json.contains("\"0001abff\""), "{json}");
        let decoded: RegionCommand = serde_json::from_str(&json).expect("decoding a command");
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
        let converted = CommandMutation::from_proto(&put).expect("valid mutation");
        assert_eq!(converted.kind, MutationKind::Put);
        assert_eq!(converted.condition, Condition::MustNotExist);
        let bad_op = Mutation {
            op: 42,
            ..put.clone()
        };
        assert!(matches!(
            CommandMutation::from_proto(&bad_op),
            Err(RaftstoreError::InvalidArgument { .. })
        ));
        let bad_condition = Mutation {
            condition: 42,
            ..put
        };
        assert!(CommandMutation::from_proto(&bad_condition).is_err());
    }
}
