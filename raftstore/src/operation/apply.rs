//! Whether a command admitted earlier may still apply to its region, as a
//! pure function. (What a transaction command writes is decided by
//! [`crate::txn::decide`].)
//!
//! **Invariant:** a command applies only to the region it was admitted to:
//! if a split applied between admission and apply (epoch version moved, or
//! a key now lies outside the range), the command is refused whole, so a
//! parent never writes into a range its child already owns.

use crate::command::EpochRecord;
use crate::storage::state_machine::KeyRange;

/// True when a command admitted at `admitted` (`None`: no epoch recorded)
/// touching `keys` may apply to the region as it is now.
pub fn command_fits_region(
    current: EpochRecord,
    range: &KeyRange,
    admitted: Option<EpochRecord>,
    keys: &[&[u8]],
) -> bool {
    let same_version = admitted.is_none_or(|epoch| epoch.version == current.version);
    same_version && keys.iter().all(|key| range.contains(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_admitted_before_a_split_are_refused_at_apply() {
        let now = EpochRecord {
            version: 4,
            conf_ver: 2,
        };
        let left = KeyRange {
            start: b"".to_vec(),
            end: b"m".to_vec(),
        };
        let inside: Vec<&[u8]> = vec![b"a"];
        let outside: Vec<&[u8]> = vec![b"a", b"z"];
        assert!(command_fits_region(now, &left, Some(now), &inside));
        let conf_change_only = EpochRecord { conf_ver: 1, ..now };
        assert!(
            command_fits_region(now, &left, Some(conf_change_only), &inside),
            "a membership change does not move keys"
        );
        let before_split = EpochRecord { version: 3, ..now };
        assert!(!command_fits_region(
            now,
            &left,
            Some(before_split),
            &inside
        ));
        assert!(!command_fits_region(now, &left, Some(now), &outside));
        assert!(command_fits_region(now, &left, None, &inside));
        assert!(!command_fits_region(now, &left, None, &outside));
    }
}
