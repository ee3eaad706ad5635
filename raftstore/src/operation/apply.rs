//! The apply decision of a write batch, as a pure function.
//!
//! **Invariant:** a batch applies all of its mutations or none. Conditions are
//! checked in order, each against the data as left by the mutations before
//! it in the same batch (so `existed[i]` is "did the key exist just before
//! mutation i"; for a batch of distinct keys that is "before the batch").
//!
//! **Invariant:** a batch applies only to the region it was admitted to: if
//! a split applied between admission and apply (epoch version moved, or a
//! key now lies outside the range), the batch is refused whole, so a parent
//! never writes into a range its child already owns.

use std::collections::BTreeMap;

use crate::command::{CommandMutation, Condition, EpochRecord, MutationKind};
use crate::storage::state_machine::KeyRange;

/// True when a batch admitted at `admitted` (`None` for version-1 commands,
/// which carry no epoch) may apply to the region as it is now.
pub fn batch_fits_region(
    current: EpochRecord,
    range: &KeyRange,
    admitted: Option<EpochRecord>,
    mutations: &[CommandMutation],
) -> bool {
    let same_version = admitted.is_none_or(|epoch| epoch.version == current.version);
    same_version
        && mutations
            .iter()
            .all(|mutation| range.contains(&mutation.key))
}

/// What applying a batch must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyDecision {
    /// Write every mutation in order; `key_count_delta` is the change in the
    /// number of live keys.
    Apply {
        existed: Vec<bool>,
        key_count_delta: i64,
    },
    /// The condition of mutation `mutation_index` failed; write nothing.
    Reject { mutation_index: usize },
}

/// Decides a batch given, for every key the batch touches, whether it exists
/// now. A key missing from `present_before` counts as absent.
pub fn decide(
    mutations: &[CommandMutation],
    present_before: &BTreeMap<Vec<u8>, bool>,
) -> ApplyDecision {
    let mut present: BTreeMap<&[u8], bool> = BTreeMap::new();
    let mut existed = Vec::with_capacity(mutations.len());
    for (index, mutation) in mutations.iter().enumerate() {
        let key = mutation.key.as_slice();
        let exists = *present
            .entry(key)
            .or_insert_with(|| present_before.get(key).copied().unwrap_or(false));
        let condition_holds = match mutation.condition {
            Condition::None => true,
            Condition::MustNotExist => !exists,
            Condition::MustExist => exists,
        };
        if !condition_holds {
            return ApplyDecision::Reject {
                mutation_index: index,
            };
        }
        existed.push(exists);
        present.insert(key, mutation.kind == MutationKind::Put);
    }
    let key_count_delta = present
        .iter()
        .map(|(key, now)| {
            let before = present_before.get(*key).copied().unwrap_or(false);
            i64::from(*now) - i64::from(before)
        })
        .sum();
    ApplyDecision::Apply {
        existed,
        key_count_delta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_admitted_before_a_split_are_refused_at_apply() {
        let now = EpochRecord {
            version: 4,
            conf_ver: 2,
        };
        let left = KeyRange {
            start: b"".to_vec(),
            end: b"m".to_vec(),
        };
        let inside = vec![put("a", Condition::None)];
        let outside = vec![put("a", Condition::None), put("z", Condition::None)];
        assert!(batch_fits_region(now, &left, Some(now), &inside));
        let conf_change_only = EpochRecord { conf_ver: 1, ..now };
        assert!(
            batch_fits_region(now, &left, Some(conf_change_only), &inside),
            "a membership change does not move keys"
        );
        let before_split = EpochRecord { version: 3, ..now };
        assert!(!batch_fits_region(now, &left, Some(before_split), &inside));
        assert!(!batch_fits_region(now, &left, Some(now), &outside));
        assert!(
            batch_fits_region(now, &left, None, &inside),
            "version-1 batch"
        );
        assert!(!batch_fits_region(now, &left, None, &outside));
    }

    fn put(key: &str, condition: Condition) -> CommandMutation {
        CommandMutation {
            kind: MutationKind::Put,
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            condition,
        }
    }

    fn delete(key: &str, condition: Condition) -> CommandMutation {
        CommandMutation {
            kind: MutationKind::Delete,
            key: key.as_bytes().to_vec(),
            value: Vec::new(),
            condition,
        }
    }

    fn existing(keys: &[&str]) -> BTreeMap<Vec<u8>, bool> {
        keys.iter()
            .map(|key| (key.as_bytes().to_vec(), true))
            .collect()
    }

    #[test]
    fn unconditional_batch_applies_and_reports_existed_per_mutation() {
        let batch = [
            put("a", Condition::None),
            put("b", Condition::None),
            delete("c", Condition::None),
        ];
        let decision = decide(&batch, &existing(&["b", "c"]));
        assert_eq!(
            decision,
            ApplyDecision::Apply {
                existed: vec![false, true, true],
                key_count_delta: 0,
            }
        );
    }

    #[test]
    fn must_not_exist_rejects_the_whole_batch_when_the_key_exists() {
        let batch = [put("a", Condition::None), put("b", Condition::MustNotExist)];
        assert_eq!(
            decide(&batch, &existing(&["b"])),
            ApplyDecision::Reject { mutation_index: 1 }
        );
    }

    #[test]
    fn must_exist_rejects_when_the_key_is_absent() {
        let batch = [delete("gone", Condition::MustExist)];
        assert_eq!(
            decide(&batch, &existing(&[])),
            ApplyDecision::Reject { mutation_index: 0 }
        );
    }

    #[test]
    fn the_first_failed_condition_is_reported() {
        let batch = [
            put("a", Condition::MustExist),
            put("b", Condition::MustNotExist),
            put("c", Condition::MustExist),
        ];
        assert_eq!(
            decide(&batch, &existing(&["a", "b"])),
            ApplyDecision::Reject { mutation_index: 1 }
        );
    }

    #[test]
    fn satisfied_conditions_apply_and_count_keys() {
        let batch = [
            put("new", Condition::MustNotExist),
            delete("old", Condition::MustExist),
            put("kept", Condition::MustExist),
        ];
        assert_eq!(
            decide(&batch, &existing(&["old", "kept"])),
            ApplyDecision::Apply {
                existed: vec![false, true, true],
                key_count_delta: 0,
            }
        );
        let inserts = [put("x", Condition::MustNotExist), put("y", Condition::None)];
        assert_eq!(
            decide(&inserts, &existing(&[])),
            ApplyDecision::Apply {
                existed: vec![false, false],
                key_count_delta: 2,
            }
        );
    }

    #[test]
    fn later_mutations_see_earlier_ones_of_the_same_batch() {
        let batch = [
            put("k", Condition::MustNotExist),
            put("k", Condition::MustExist),
            delete("k", Condition::None),
        ];
        assert_eq!(
            decide(&batch, &existing(&[])),
            ApplyDecision::Apply {
                existed: vec![false, true, true],
                key_count_delta: 0,
            }
        );
        let conflicting = [
            put("k", Condition::MustNotExist),
            put("k", Condition::MustNotExist),
        ];
        assert_eq!(
            decide(&conflicting, &existing(&[])),
            ApplyDecision::Reject { mutation_index: 1 }
        );
    }

    #[test]
    fn generated_batches_never_apply_a_failed_condition() {
        // Small deterministic generator: every batch of up to three
        // mutations over two keys and two starting states.
        let kinds = [MutationKind::Put, MutationKind::Delete];
        let conditions = [
            Condition::None,
            Condition::MustNotExist,
            Condition::MustExist,
        ];
        let keys = ["p", "q"];
        let mut singles = Vec::new();
        for kind in kinds {
            for condition in conditions {
                for key in keys {
                    singles.push(CommandMutation {
                        kind,
                        key: key.as_bytes().to_vec(),
                        value: b"v".to_vec(),
                        condition,
                    });
                }
            }
        }
        for before in [existing(&[]), existing(&["p"])] {
            for a in &singles {
                for b in &singles {
                    let batch = [a.clone(), b.clone()];
                    let mut model: BTreeMap<Vec<u8>, bool> = before.clone();
                    let mut expected = None;
                    let mut existed = Vec::new();
                    for (index, mutation) in batch.iter().enumerate() {
                        let exists = model.get(&mutation.key).copied().unwrap_or(false);
                        let fails = matches!(
                            (mutation.condition, exists),
                            (Condition::MustNotExist, true) | (Condition::MustExist, false)
                        );
                        if fails {
                            expected = Some(ApplyDecision::Reject {
                                mutation_index: index,
                            });
                            break;
                        }
                        existed.push(exists);
                        model.insert(mutation.key.clone(), mutation.kind == MutationKind::Put);
                    }
                    let expected = expected.unwrap_or_else(|| {
                        let count = |map: &BTreeMap<Vec<u8>, bool>| {
                            map.values().filter(|v| **v).count() as i64
                        };
                        ApplyDecision::Apply {
                            existed,
                            key_count_delta: count(&model) - count(&before),
                        }
                    });
                    assert_eq!(
                        decide(&batch, &before),
                        expected,
                        "batch {batch:?} over {before:?}"
                    );
                }
            }
        }
    }
}
