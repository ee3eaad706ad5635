//! The byte layout of the records in the `lock` and `write` column families
//! (their keys are in [`crate::keys`]). Both start with a format byte, so a
//! later layout can be told apart from this one.
//!
//! ```text
//! write: RECORD_FORMAT | kind (u8) | start_ts (u64 BE) | value (Put only, to the end)
//! lock:  RECORD_FORMAT | kind (u8) | start_ts (u64 BE) | ttl_ms (u64 BE)
//!        | primary length (u32 BE) | primary | value (to the end)
//! ```

use super::{Lock, MutationKind, WriteKind, WriteRecord};

/// The layout of every record this code writes.
pub const RECORD_FORMAT: u8 = 1;

const WRITE_PUT: u8 = b'P';
const WRITE_DELETE: u8 = b'D';
const WRITE_ROLLBACK: u8 = b'R';
const WRITE_LOCK: u8 = b'L';
/// Only in the lock column family: a lock taken at read time.
const LOCK_PESSIMISTIC: u8 = b'S';

/// Why stored record bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDecodeError(pub String);

impl std::fmt::Display for RecordDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transaction record: {}", self.0)
    }
}

impl std::error::Error for RecordDecodeError {}

fn mutation_byte(kind: MutationKind) -> u8 {
    match kind {
        MutationKind::Put => WRITE_PUT,
        MutationKind::Delete => WRITE_DELETE,
        MutationKind::Lock => WRITE_LOCK,
        MutationKind::PessimisticLock => LOCK_PESSIMISTIC,
    }
}

pub fn encode_write(record: &WriteRecord) -> Vec<u8> {
    let kind = match record.kind {
        WriteKind::Put => WRITE_PUT,
        WriteKind::Delete => WRITE_DELETE,
        WriteKind::Rollback => WRITE_ROLLBACK,
        WriteKind::Lock => WRITE_LOCK,
    };
    let mut bytes = Vec::with_capacity(10 + record.value.len());
    bytes.push(RECORD_FORMAT);
    bytes.push(kind);
    bytes.extend_from_slice(&record.start_ts.to_be_bytes());
    if record.kind == WriteKind::Put {
        bytes.extend_from_slice(&record.value);
    }
    bytes
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], RecordDecodeError> {
        if self.bytes.len() < length {
            return Err(RecordDecodeError(format!(
                "truncated: wanted {length} bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, RecordDecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, RecordDecodeError> {
        let bytes: [u8; 8] = self
            .take(8)?
            .try_into()
            .expect("take(8) returns eight bytes");
        Ok(u64::from_be_bytes(bytes))
    }

    fn u32(&mut self) -> Result<u32, RecordDecodeError> {
        let bytes: [u8; 4] = self
            .take(4)?
            .try_into()
            .expect("take(4) returns four bytes");
        Ok(u32::from_be_bytes(bytes))
    }

    fn format(&mut self) -> Result<(), RecordDecodeError> {
        match self.byte()? {
            RECORD_FORMAT => Ok(()),
            other => Err(RecordDecodeError(format!("unknown record format {other}"))),
        }
    }
}

pub fn decode_write(bytes: &[u8]) -> Result<WriteRecord, RecordDecodeError> {
    let mut reader = Reader { bytes };
    reader.format()?;
    let kind = match reader.byte()? {
        WRITE_PUT => WriteKind::Put,
        WRITE_DELETE => WriteKind::Delete,
        WRITE_ROLLBACK => WriteKind::Rollback,
        WRITE_LOCK => WriteKind::Lock,
        other => return Err(RecordDecodeError(format!("unknown write kind {other}"))),
    };
    let start_ts = reader.u64()?;
    let value = reader.bytes.to_vec();
    if kind != WriteKind::Put && !value.is_empty() {
        return Err(RecordDecodeError(format!(
            "a {kind:?} record carries {} value bytes",
            value.len()
        )));
    }
    Ok(WriteRecord {
        kind,
        start_ts,
        value,
    })
}

pub fn encode_lock(lock: &Lock) -> Vec<u8> {
    let primary_length =
        u32::try_from(lock.primary.len()).expect("keys are capped far below 4 GiB");
    let mut bytes = Vec::with_capacity(22 + lock.primary.len() + lock.value.len());
    bytes.push(RECORD_FORMAT);
    bytes.push(mutation_byte(lock.kind));
    bytes.extend_from_slice(&lock.start_ts.to_be_bytes());
    bytes.extend_from_slice(&lock.ttl_ms.to_be_bytes());
    bytes.extend_from_slice(&primary_length.to_be_bytes());
    bytes.extend_from_slice(&lock.primary);
    bytes.extend_from_slice(&lock.value);
    bytes
}

pub fn decode_lock(bytes: &[u8]) -> Result<Lock, RecordDecodeError> {
    let mut reader = Reader { bytes };
    reader.format()?;
    let kind = match reader.byte()? {
        WRITE_PUT => MutationKind::Put,
        WRITE_DELETE => MutationKind::Delete,
        WRITE_LOCK => MutationKind::Lock,
        LOCK_PESSIMISTIC => MutationKind::PessimisticLock,
        other => return Err(RecordDecodeError(format!("unknown lock kind {other}"))),
    };
    let start_ts = reader.u64()?;
    let ttl_ms = reader.u64()?;
    let primary_length = reader.u32()? as usize;
    let primary = reader.take(primary_length)?.to_vec();
    Ok(Lock {
        primary,
        start_ts,
        ttl_ms,
        kind,
        value: reader.bytes.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_records_round_trip_for_every_kind() {
        for (kind, value) in [
            (WriteKind::Put, b"v\x00\xff".to_vec()),
            (WriteKind::Put, Vec::new()),
            (WriteKind::Delete, Vec::new()),
            (WriteKind::Rollback, Vec::new()),
            (WriteKind::Lock, Vec::new()),
        ] {
            let record = WriteRecord {
                kind,
                start_ts: (7 << 18) | 3,
                value,
            };
            let bytes = encode_write(&record);
            assert_eq!(bytes[0], RECORD_FORMAT);
            assert_eq!(decode_write(&bytes), Ok(record));
        }
    }

    #[test]
    fn locks_round_trip_for_every_kind() {
        for kind in [
            MutationKind::Put,
            MutationKind::Delete,
            MutationKind::Lock,
            MutationKind::PessimisticLock,
        ] {
            let lock = Lock {
                primary: b"primary\x00".to_vec(),
                start_ts: u64::MAX - 1,
                ttl_ms: 3_000,
                kind,
                value: b"value".to_vec(),
            };
            assert_eq!(decode_lock(&encode_lock(&lock)), Ok(lock));
        }
    }

    #[test]
    fn damaged_records_are_refused() {
        let record = encode_write(&WriteRecord::rollback(5));
        assert!(decode_write(&record[..record.len() - 1]).is_err());
        assert!(decode_write(&[9, WRITE_PUT, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(decode_write(&[RECORD_FORMAT, b'?', 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        let mut delete_with_value = encode_write(&WriteRecord {
            kind: WriteKind::Delete,
            start_ts: 1,
            value: Vec::new(),
        });
        delete_with_value.push(1);
        assert!(decode_write(&delete_with_value).is_err());
        let lock = encode_lock(&Lock {
            primary: b"p".to_vec(),
            start_ts: 1,
            ttl_ms: 1,
            kind: MutationKind::Put,
            value: Vec::new(),
        });
        assert!(decode_lock(&lock[..lock.len() - 1]).is_err(), "primary cut");
        assert!(decode_lock(&[]).is_err());
    }
}
