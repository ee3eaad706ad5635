//! A transaction's own writes, kept in the gateway until COMMIT, and the
//! merge of those writes into snapshot reads. Pure: no IO.
//!
//! **Invariant:** the buffer never holds more than [`TXN_WRITES_MAX`] keys or
//! [`TXN_BYTES_MAX`] bytes of keys and values; the write that would pass a
//! limit is refused (54000) and leaves the buffer as it was.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::GatewayError;
use crate::store::WriteIntent;

/// Keys one transaction may write (or lock) before COMMIT.
pub(crate) const TXN_WRITES_MAX: usize = 100_000;
/// Bytes of keys and values one transaction may buffer before COMMIT.
pub(crate) const TXN_BYTES_MAX: usize = 64 << 20;

/// What a read of one key sees in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Buffered<'a> {
    /// This transaction wrote the value.
    Put(&'a [u8]),
    /// This transaction deleted the key.
    Deleted,
    /// This transaction did not change the key: read the snapshot.
    Unchanged,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WriteBuffer {
    writes: BTreeMap<Vec<u8>, WriteIntent>,
    bytes: usize,
}

fn intent_bytes(key: &[u8], intent: &WriteIntent) -> usize {
    key.len()
        + match intent {
            WriteIntent::Put(value) => value.len(),
            WriteIntent::Delete | WriteIntent::Lock => 0,
        }
}

impl WriteBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.writes.len()
    }

    pub(crate) fn lookup(&self, key: &[u8]) -> Buffered<'_> {
        match self.writes.get(key) {
            Some(WriteIntent::Put(value)) => Buffered::Put(value),
            Some(WriteIntent::Delete) => Buffered::Deleted,
            Some(WriteIntent::Lock) | None => Buffered::Unchanged,
        }
    }

    /// Records the writes of one statement, all or none: if they would pass
    /// a limit, nothing is recorded.
    pub(crate) fn write_all(
        &mut self,
        writes: Vec<(Vec<u8>, WriteIntent)>,
    ) -> Result<(), GatewayError> {
        let mut staged = self.clone();
        for (key, intent) in writes {
            staged.write_one(key, intent)?;
        }
        *self = staged;
        Ok(())
    }

    fn write_one(&mut self, key: Vec<u8>, intent: WriteIntent) -> Result<(), GatewayError> {
        let previous = self.writes.get(&key);
        // A lock adds nothing to a key this transaction already writes.
        if intent == WriteIntent::Lock && previous.is_some() {
            return Ok(());
        }
        let removed = previous.map_or(0, |previous| intent_bytes(&key, previous));
        let added = intent_bytes(&key, &intent);
        let bytes = self.bytes - removed + added;
        let keys = self.writes.len() + usize::from(previous.is_none());
        if keys > TXN_WRITES_MAX {
            return Err(GatewayError::ProgramLimitExceeded {
                what: format!("a transaction writing {keys} rows"),
                limit: TXN_WRITES_MAX,
            });
        }
        if bytes > TXN_BYTES_MAX {
            return Err(GatewayError::ProgramLimitExceeded {
                what: format!("a transaction writing {bytes} bytes"),
                limit: TXN_BYTES_MAX,
            });
        }
        self.bytes = bytes;
        self.writes.insert(key, intent);
        Ok(())
    }

    /// Every buffered write, in key order, for COMMIT.
    pub(crate) fn into_writes(self) -> Vec<(Vec<u8>, WriteIntent)> {
        self.writes.into_iter().collect()
    }

    /// Merges the buffer's writes in `[start, upper)` (empty `upper` =
    /// unbounded) into `snapshot`, a key-ordered page of committed pairs in
    /// that same range: buffered puts replace or add pairs, buffered deletes
    /// remove them. The result is in key order.
    pub(crate) fn merge(
        &self,
        snapshot: Vec<(Vec<u8>, Vec<u8>)>,
        start: &[u8],
        upper: &[u8],
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let end = if upper.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(upper)
        };
        let mut own = self
            .writes
            .range::<[u8], _>((Bound::Included(start), end))
            .filter(|(_, intent)| **intent != WriteIntent::Lock)
            .peekable();
        let mut merged = Vec::with_capacity(snapshot.len());
        let mut committed = snapshot.into_iter().peekable();
        loop {
            let take_own = match (committed.peek(), own.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((committed_key, _)), Some((own_key, _))) => {
                    own_key.as_slice() <= committed_key.as_slice()
                }
            };
            if !take_own {
                if let Some(pair) = committed.next() {
                    merged.push(pair);
                }
                continue;
            }
            let Some((key, intent)) = own.next() else {
                break;
            };
            if committed
                .peek()
                .is_some_and(|(committed_key, _)| committed_key == key)
            {
                committed.next();
            }
            if let WriteIntent::Put(value) = intent {
                merged.push((key.clone(), value.clone()));
            }
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        items
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn buffer(items: &[(&str, Option<&str>)]) -> WriteBuffer {
        let mut buffer = WriteBuffer::default();
        let writes = items
            .iter()
            .map(|(k, v)| {
                let intent = match v {
                    Some("LOCK") => WriteIntent::Lock,
                    Some(v) => WriteIntent::Put(v.as_bytes().to_vec()),
                    None => WriteIntent::Delete,
                };
                (k.as_bytes().to_vec(), intent)
            })
            .collect();
        buffer.write_all(writes).expect("small buffer");
        buffer
    }

    #[test]
    fn own_writes_replace_add_and_hide_snapshot_pairs() {
        let own = buffer(&[
            ("a", Some("A2")),
            ("b", None),
            ("c", Some("C")),
            ("e", Some("LOCK")),
        ]);
        let merged = own.merge(
            pairs(&[("a", "A1"), ("b", "B1"), ("d", "D1"), ("e", "E1")]),
            b"",
            b"",
        );
        assert_eq!(
            merged,
            pairs(&[("a", "A2"), ("c", "C"), ("d", "D1"), ("e", "E1")])
        );
    }

    #[test]
    fn merge_keeps_to_the_requested_range() {
        let own = buffer(&[("a", Some("A")), ("m", Some("M")), ("z", Some("Z"))]);
        let merged = own.merge(pairs(&[("k", "K")]), b"b", b"y");
        assert_eq!(merged, pairs(&[("k", "K"), ("m", "M")]));
    }

    #[test]
    fn lookup_sees_puts_and_deletes_but_not_locks() {
        let own = buffer(&[("p", Some("P")), ("d", None), ("l", Some("LOCK"))]);
        assert_eq!(own.lookup(b"p"), Buffered::Put(b"P"));
        assert_eq!(own.lookup(b"d"), Buffered::Deleted);
        assert_eq!(own.lookup(b"l"), Buffered::Unchanged);
        assert_eq!(own.lookup(b"x"), Buffered::Unchanged);
    }

    #[test]
    fn a_lock_never_downgrades_a_write() {
        let mut own = buffer(&[("k", Some("V"))]);
        own.write_all(vec![(b"k".to_vec(), WriteIntent::Lock)])
            .expect("fits");
        assert_eq!(own.lookup(b"k"), Buffered::Put(b"V"));
    }

    #[test]
    fn a_statement_past_the_byte_limit_is_refused_whole() {
        let mut own = buffer(&[("first", Some("x"))]);
        let before = own.clone();
        let big = vec![0u8; TXN_BYTES_MAX / 2 + 1];
        let result = own.write_all(vec![
            (b"a".to_vec(), WriteIntent::Put(big.clone())),
            (b"b".to_vec(), WriteIntent::Put(big)),
        ]);
        let error = result.expect_err("over the limit");
        assert_eq!(error.sqlstate(), "54000");
        assert_eq!(own, before, "nothing of the refused statement is kept");
    }

    #[test]
    fn rewriting_a_key_counts_its_bytes_once() {
        let mut own = WriteBuffer::default();
        let value = vec![1u8; TXN_BYTES_MAX / 2];
        for _ in 0..4 {
            own.write_all(vec![(b"k".to_vec(), WriteIntent::Put(value.clone()))])
                .expect("same key rewritten stays under the limit");
        }
        assert_eq!(own.len(), 1);
    }

    #[test]
    fn generated_merges_match_a_model() {
        // Every buffer over keys a..d (absent, put, delete, lock) merged into
        // every snapshot subset, checked against a map model.
        let keys = ["a", "b", "c", "d"];
        let choices = [None, Some("put"), Some("del"), Some("lock")];
        for snapshot_mask in 0..16u32 {
            let snapshot: Vec<(Vec<u8>, Vec<u8>)> = keys
                .iter()
                .enumerate()
                .filter(|(i, _)| snapshot_mask & (1 << i) != 0)
                .map(|(_, k)| (k.as_bytes().to_vec(), b"old".to_vec()))
                .collect();
            for code in 0..4usize.pow(4) {
                let mut own = WriteBuffer::default();
                let mut model: BTreeMap<Vec<u8>, Vec<u8>> = snapshot.iter().cloned().collect();
                for (i, key) in keys.iter().enumerate() {
                    let key = key.as_bytes().to_vec();
                    let intent = match choices[(code / 4usize.pow(i as u32)) % 4] {
                        None => continue,
                        Some("put") => {
                            model.insert(key.clone(), b"new".to_vec());
                            WriteIntent::Put(b"new".to_vec())
                        }
                        Some("del") => {
                            model.remove(&key);
                            WriteIntent::Delete
                        }
                        _ => WriteIntent::Lock,
                    };
                    own.write_all(vec![(key, intent)]).expect("fits");
                }
                let merged = own.merge(snapshot.clone(), b"", b"");
                let expected: Vec<_> = model.into_iter().collect();
                assert_eq!(
                    merged, expected,
                    "snapshot {snapshot_mask:04b}, code {code}"
                );
            }
        }
    }
}
