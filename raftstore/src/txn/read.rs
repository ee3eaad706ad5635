//! Reads at a timestamp: the newest version committed at or below
//! `read_ts` that is data — `Put` gives its value, `Delete` means absent;
//! `Rollback` and `Lock` records are skipped. A lock that may commit below
//! `read_ts` ([`super::Lock::blocks_read`]) is answered instead of data by
//! the read driver.

use super::{WriteKind, WriteRecord};

/// The value visible at `read_ts` from `versions` (one key's records,
/// newest first; those above `read_ts` are skipped here).
pub fn visible_value<E>(
    versions: impl IntoIterator<Item = Result<(u64, WriteRecord), E>>,
    read_ts: u64,
) -> Result<Option<Vec<u8>>, E> {
    for version in versions {
        let (commit_ts, record) = version?;
        if commit_ts > read_ts {
            continue;
        }
        match record.kind {
            WriteKind::Put => return Ok(Some(record.value)),
            WriteKind::Delete => return Ok(None),
            WriteKind::Rollback | WriteKind::Lock => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: WriteKind, start_ts: u64, value: &str) -> WriteRecord {
        WriteRecord {
            kind,
            start_ts,
            value: value.as_bytes().to_vec(),
        }
    }

    fn read(versions: &[(u64, WriteRecord)], read_ts: u64) -> Option<Vec<u8>> {
        let versions = versions.iter().cloned().map(Ok::<_, ()>);
        visible_value(versions, read_ts).expect("no read error")
    }

    #[test]
    fn reads_see_the_newest_data_version_at_or_below_their_timestamp() {
        // Newest first: put@50, rollback@45, lock@40, delete@30, put@20.
        let versions = vec![
            (50, record(WriteKind::Put, 48, "new")),
            (45, WriteRecord::rollback(45)),
            (40, record(WriteKind::Lock, 39, "")),
            (30, record(WriteKind::Delete, 29, "")),
            (20, record(WriteKind::Put, 10, "old")),
        ];
        assert_eq!(read(&versions, 10), None, "before the first commit");
        assert_eq!(read(&versions, 20), Some(b"old".to_vec()), "at commit_ts");
        assert_eq!(read(&versions, 29), Some(b"old".to_vec()));
        assert_eq!(read(&versions, 30), None, "deleted");
        assert_eq!(
            read(&versions, 47),
            None,
            "rollback and lock records skipped"
        );
        assert_eq!(read(&versions, 50), Some(b"new".to_vec()));
        assert_eq!(read(&versions, u64::MAX), Some(b"new".to_vec()));
        assert_eq!(read(&[], 100), None);
    }

    #[test]
    fn read_errors_surface() {
        let versions = vec![Err::<(u64, WriteRecord), &str>("disk")];
        assert_eq!(visible_value(versions, 5), Err("disk"));
    }
}
