//! Reading the multi-version layout of a store's RocksDB (keys in
//! [`crate::keys`], records in [`crate::txn::record`]): a key's lock, its
//! versions newest first, the value visible at a timestamp, and a bounded
//! scan of a range at a timestamp. Used by apply (through
//! [`crate::txn::TxnReader`]) and by the read path.

use rocksdb::{Direction, IteratorMode, ReadOptions, DB};

use super::cf;
use crate::error::RaftstoreError;
use crate::keys::{self, CF_LOCK, CF_WRITE};
use crate::storage::state_machine::KeyRange;
use crate::txn::{self, record, Lock, TxnReader, WriteKind, WriteRecord};

fn read_error(source: rocksdb::Error) -> RaftstoreError {
    RaftstoreError::Storage {
        context: "reading transaction records".into(),
        source,
    }
}

fn corrupt(what: &str, key: &[u8], hint: impl std::fmt::Display) -> RaftstoreError {
    RaftstoreError::Corrupt {
        context: format!("{what} at {key:?}"),
        hint: hint.to_string(),
    }
}

/// Iterator bounds of one user key's versions in the write column family.
fn versions_read_options(user_key: &[u8]) -> ReadOptions {
    let lower = keys::encode_user_key(user_key);
    // Every write key of `user_key` starts with `lower` (which ends with
    // the terminator 0x00 0x01): bumping the last byte bounds them all.
    let mut upper = lower.clone();
    if let Some(last) = upper.last_mut() {
        *last += 1;
    }
    let mut options = ReadOptions::default();
    options.set_iterate_lower_bound(lower);
    options.set_iterate_upper_bound(upper);
    options
}

fn decode_version(key: &[u8], value: &[u8]) -> Result<(u64, WriteRecord), RaftstoreError> {
    let (_, commit_ts) =
        keys::decode_write_key(key).ok_or_else(|| corrupt("write key", key, "undecodable"))?;
    let record = record::decode_write(value).map_err(|e| corrupt("write record", key, e))?;
    Ok((commit_ts, record))
}

/// The store's RocksDB as a [`TxnReader`].
pub struct DbReader<'a> {
    pub db: &'a DB,
}

impl DbReader<'_> {
    /// `user_key`'s versions committed at or below `read_ts`, newest first.
    pub fn versions_at<'a>(
        &'a self,
        user_key: &[u8],
        read_ts: u64,
    ) -> impl Iterator<Item = Result<(u64, WriteRecord), RaftstoreError>> + 'a {
        let start = keys::write_key(user_key, read_ts);
        self.db
            .iterator_cf_opt(
                cf(self.db, CF_WRITE),
                versions_read_options(user_key),
                IteratorMode::From(&start, Direction::Forward),
            )
            .map(|item| {
                let (key, value) = item.map_err(read_error)?;
                decode_version(&key, &value)
            })
    }

    /// The value of `user_key` visible at `read_ts` (locks not consulted).
    pub fn value_at(
        &self,
        user_key: &[u8],
        read_ts: u64,
    ) -> Result<Option<Vec<u8>>, RaftstoreError> {
        txn::read::visible_value(self.versions_at(user_key, read_ts), read_ts)
    }

    /// An iterator over the locks of `range`, reading the locks as they
    /// are now (RocksDB iterators read a snapshot taken at creation): create
    /// it before reading data, so a lock committed in between shows as its
    /// write record, never as nothing.
    pub fn locks_now(&self, range: &KeyRange) -> LockIterator<'_> {
        self.db.iterator_cf_opt(
            cf(self.db, CF_LOCK),
            range.lock_read_options(),
            IteratorMode::Start,
        )
    }
}

pub type LockIterator<'a> = rocksdb::DBIteratorWithThreadMode<'a, DB>;

/// The first lock from `locks` below `until` (`None` = no bound) that
/// blocks a read at `read_ts`.
pub fn first_blocking_lock(
    locks: LockIterator<'_>,
    until: Option<&[u8]>,
    read_ts: u64,
) -> Result<Option<(Vec<u8>, Lock)>, RaftstoreError> {
    for item in locks {
        let (key, value) = item.map_err(read_error)?;
        if until.is_some_and(|until| key.as_ref() >= until) {
            break;
        }
        let lock = record::decode_lock(&value).map_err(|e| corrupt("lock", &key, e))?;
        if lock.blocks_read(read_ts) {
            return Ok(Some((key.to_vec(), lock)));
        }
    }
    Ok(None)
}

impl TxnReader for DbReader<'_> {
    type Error = RaftstoreError;

    fn lock(&self, user_key: &[u8]) -> Result<Option<Lock>, RaftstoreError> {
        let bytes = self
            .db
            .get_pinned_cf(cf(self.db, CF_LOCK), keys::lock_key(user_key))
            .map_err(read_error)?;
        bytes
            .map(|bytes| record::decode_lock(&bytes).map_err(|e| corrupt("lock", user_key, e)))
            .transpose()
    }

    fn versions<'a>(
        &'a self,
        user_key: &[u8],
    ) -> Box<dyn Iterator<Item = Result<(u64, WriteRecord), RaftstoreError>> + 'a> {
        Box::new(self.versions_at(user_key, u64::MAX))
    }
}

/// What a scan of a range at a timestamp found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanOutcome {
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The limits cut the scan short.
    pub more: bool,
}

/// Limits of one scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    pub rows: usize,
    /// Stop adding pairs once this many bytes are held (at least one pair
    /// is always returned, so a scan makes progress).
    pub bytes: usize,
}

/// The visible pairs of `range` at `read_ts` (locks not consulted), in key
/// order, within `limits`.
pub fn scan_range(
    db: &DB,
    range: &KeyRange,
    read_ts: u64,
    limits: ScanLimits,
) -> Result<ScanOutcome, RaftstoreError> {
    let mut outcome = ScanOutcome::default();
    if !range.end.is_empty() && range.start >= range.end {
        return Ok(outcome);
    }
    let mut bytes = 0usize;
    // The user key whose visible version was decided already.
    let mut decided: Option<Vec<u8>> = None;
    let iter = db.iterator_cf_opt(
        cf(db, CF_WRITE),
        range.write_read_options(),
        IteratorMode::Start,
    );
    for item in iter {
        let (key, value) = item.map_err(read_error)?;
        let (user_key, commit_ts) = keys::decode_write_key(&key)
            .ok_or_else(|| corrupt("write key", &key, "undecodable"))?;
        if decided.as_ref() == Some(&user_key) || commit_ts > read_ts {
            continue;
        }
        let record = record::decode_write(&value).map_err(|e| corrupt("write record", &key, e))?;
        match record.kind {
            WriteKind::Rollback | WriteKind::Lock => continue,
            WriteKind::Delete => {}
            WriteKind::Put => {
                let full = outcome.pairs.len() >= limits.rows
                    || (!outcome.pairs.is_empty() && bytes >= limits.bytes);
                if full {
                    outcome.more = true;
                    break;
                }
                bytes += user_key.len() + record.value.len();
                outcome.pairs.push((user_key.clone(), record.value));
            }
        }
        decided = Some(user_key);
    }
    Ok(outcome)
}

/// Distinct user keys in `range` whose newest data version is a Put.
pub fn count_live_keys(db: &DB, range: &KeyRange) -> Result<u64, RaftstoreError> {
    let iter = db.iterator_cf_opt(
        cf(db, CF_WRITE),
        range.write_read_options(),
        IteratorMode::Start,
    );
    count_live_pairs(iter.map(|item| item.map_err(read_error)))
}

/// Distinct user keys whose newest data version is a Put, over write CF
/// pairs in key order.
pub fn count_live_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    pairs: impl IntoIterator<Item = Result<(K, V), RaftstoreError>>,
) -> Result<u64, RaftstoreError> {
    let mut count = 0u64;
    let mut decided: Option<Vec<u8>> = None;
    for pair in pairs {
        let (key, value) = pair?;
        let (key, value) = (key.as_ref(), value.as_ref());
        let (user_key, _) =
            keys::decode_write_key(key).ok_or_else(|| corrupt("write key", key, "undecodable"))?;
        if decided.as_ref() == Some(&user_key) {
            continue;
        }
        let record = record::decode_write(value).map_err(|e| corrupt("write record", key, e))?;
        if !record.is_data() {
            continue;
        }
        count += u64::from(record.kind == WriteKind::Put);
        decided = Some(user_key);
    }
    Ok(count)
}
