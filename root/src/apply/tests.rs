use arbor_proto::root_event::Kind;
use arbor_proto::*;

use super::*;

fn command(kind: Kind, stamp_ms: u64) -> RootCommand {
    RootCommand {
        format_version: ROOT_COMMAND_FORMAT_VERSION,
        event: Some(RootEvent { kind: Some(kind) }),
        stamp_ms,
        lease_fence: None,
    }
}

fn grant(holder: &str, generation: u64, ttl_ms: u64) -> Kind {
    Kind::LeaseGranted(LeaseGranted {
        holder_id: holder.into(),
        holder_address: format!("{holder}:1"),
        generation,
        ttl_ms,
    })
}

fn renew(holder: &str, generation: u64, ttl_ms: u64) -> Kind {
    Kind::LeaseRenewed(LeaseRenewed {
        holder_id: holder.into(),
        generation,
        ttl_ms,
    })
}

fn seal(holder: &str, generation: u64) -> Kind {
    Kind::LeaseSealed(LeaseSealed {
        holder_id: holder.into(),
        generation,
    })
}

fn bootstrapped() -> RootState {
    let mut state = RootState::default();
    let boot = Kind::ClusterBootstrapped(ClusterBootstrapped {
        cluster_id: "c".into(),
    });
    apply_command(&mut state, &command(boot, 1), 1).unwrap();
    for id in 1..=3 {
        let join = Kind::StoreJoined(StoreJoined {
            store: Some(StoreDescriptor {
                store_id: id,
                address: format!("s{id}"),
            }),
        });
        apply_command(&mut state, &command(join, 1), 1 + id).unwrap();
    }
    state
}

#[test]
fn first_lease_must_be_generation_one() {
    let mut state = RootState::default();
    let err = apply_command(&mut state, &command(grant("a", 2, 1000), 10), 1).unwrap_err();
    assert_eq!(err.code(), RejectionCode::StaleGeneration);
    assert!(state.lease.is_none());
    apply_command(&mut state, &command(grant("a", 1, 1000), 10), 2).unwrap();
    let lease = state.lease.unwrap();
    assert_eq!((lease.generation, lease.expires_at_ms), (1, 1010));
}

#[test]
fn lease_grant_rejected_while_current_lease_unexpired() {
    let mut state = RootState::default();
    apply_command(&mut state, &command(grant("a", 1, 1000), 0), 1).unwrap();
    let before = state.lease.clone();
    let err = apply_command(&mut state, &command(grant("b", 2, 1000), 999), 2).unwrap_err();
    assert_eq!(err.code(), RejectionCode::LeaseStillHeld);
    assert_eq!(state.lease, before, "a rejection changes no fact");
    assert_eq!(state.cursor, 2, "the cursor still moves");
}

#[test]
fn lease_grant_accepted_after_expiry_with_next_generation_only() {
    let mut state = RootState::default();
    apply_command(&mut state, &command(grant("a", 1, 1000), 0), 1).unwrap();
    let stale = apply_command(&mut state, &command(grant("b", 1, 1000), 1000), 2).unwrap_err();
    assert_eq!(stale.code(), RejectionCode::StaleGeneration);
    let skip = apply_command(&mut state, &command(grant("b", 3, 1000), 1000), 3).unwrap_err();
    assert_eq!(skip.code(), RejectionCode::StaleGeneration);
    apply_command(&mut state, &command(grant("b", 2, 1000), 1000), 4).unwrap();
    assert_eq!(state.lease.unwrap().holder_id, "b");
}

#[test]
fn sealed_lease_can_be_taken_over_at_once() {
    let mut state = RootState::default();
    apply_command(&mut state, &command(grant("a", 1, 10_000), 0), 1).unwrap();
    let err = apply_command(&mut state, &command(seal("b", 1), 5), 2).unwrap_err();
    assert_eq!(err.code(), RejectionCode::NotLeaseHolder);
    apply_command(&mut state, &command(seal("a", 1), 5), 3).unwrap();
    apply_command(&mut state, &command(grant("b", 2, 10_000), 6), 4).unwrap();
    assert_eq!(state.lease.unwrap().generation, 2);
}

#[test]
fn renew_only_by_current_holder_before_expiry() {
    let mut state = RootState::default();
    apply_command(&mut state, &command(grant("a", 1, 1000), 0), 1).unwrap();
    let other = apply_command(&mut state, &command(renew("b", 1, 1000), 10), 2).unwrap_err();
    assert_eq!(other.code(), RejectionCode::NotLeaseHolder);
    let old = apply_command(&mut state, &command(renew("a", 0, 1000), 10), 3).unwrap_err();
    assert_eq!(old.code(), RejectionCode::StaleGeneration);
    apply_command(&mut state, &command(renew("a", 1, 1000), 500), 4).unwrap();
    assert_eq!(state.lease.as_ref().unwrap().expires_at_ms, 1500);
    let late = apply_command(&mut state, &command(renew("a", 1, 1000), 1500), 5).unwrap_err();
    assert_eq!(late.code(), RejectionCode::LeaseExpired);
}

#[test]
fn apply_time_never_runs_backwards() {
    let mut state = RootState::default();
    apply_command(&mut state, &command(grant("a", 1, 1000), 5000), 1).unwrap();
    // A new root leader with a slow clock stamps an earlier time: the lease
    // must still count as held at the later time already applied.
    let err = apply_command(&mut state, &command(grant("b", 2, 1000), 100), 2).unwrap_err();
    assert_eq!(err.code(), RejectionCode::LeaseStillHeld);
    assert_eq!(state.last_stamp_ms, 5000);
}

#[test]
fn lease_ttl_is_bounded() {
    let mut state = RootState::default();
    let err = apply_command(
        &mut state,
        &command(grant("a", 1, LEASE_TTL_MAX_MS + 1), 0),
        1,
    )
    .unwrap_err();
    assert_eq!(err.code(), RejectionCode::Malformed);
    let err = apply_command(&mut state, &command(grant("a", 1, 0), 0), 1).unwrap_err();
    assert_eq!(err.code(), RejectionCode::Malformed);
}

#[test]
fn generated_lease_histories_keep_generations_strictly_increasing() {
    // A small deterministic generator of racing proposals: whatever the
    // order, accepted grants have generations 1, 2, 3, ... and never
    // overlap an unexpired, unsealed lease.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let holders = ["a", "b", "c"];
    let mut state = RootState::default();
    let mut now = 0u64;
    let mut granted = Vec::new();
    for cursor in 1..2000 {
        now += next() % 400;
        let holder = holders[(next() % 3) as usize];
        let current = state.lease.as_ref().map_or(0, |l| l.generation);
        let generation = current + (next() % 3);
        let kind = match next() % 3 {
            0 => grant(holder, generation.max(1), 1000),
            1 => renew(holder, generation, 1000),
            _ => seal(holder, generation),
        };
        let before = state.lease.clone();
        let is_grant = matches!(kind, Kind::LeaseGranted(_));
        if apply_command(&mut state, &command(kind, now), cursor).is_ok() && is_grant {
            let lease = state.lease.clone().unwrap();
            if let Some(previous) = before {
                assert!(previous.sealed || previous.expires_at_ms <= now);
                assert_eq!(lease.generation, previous.generation + 1);
            } else {
                assert_eq!(lease.generation, 1);
            }
            granted.push(lease.generation);
        }
    }
    assert!(granted.len() > 3, "the generator should produce takeovers");
}

#[test]
fn bootstrap_only_once() {
    let mut state = bootstrapped();
    let again = Kind::ClusterBootstrapped(ClusterBootstrapped {
        cluster_id: "d".into(),
    });
    let err = apply_command(&mut state, &command(again, 2), 9).unwrap_err();
    assert_eq!(err.code(), RejectionCode::AlreadyBootstrapped);
    assert_eq!(state.cluster_id, "c");
}

#[test]
fn store_id_is_never_reused() {
    let mut state = bootstrapped();
    let join = Kind::StoreJoined(StoreJoined {
        store: Some(StoreDescriptor {
            store_id: 2,
            address: "elsewhere".into(),
        }),
    });
    let err = apply_command(&mut state, &command(join, 2), 9).unwrap_err();
    assert_eq!(err.code(), RejectionCode::StoreIdTaken);
    assert_eq!(state.stores.len(), 3);
}

#[test]
fn stores_cannot_join_before_bootstrap() {
    let mut state = RootState::default();
    let join = Kind::StoreJoined(StoreJoined {
        store: Some(StoreDescriptor {
            store_id: 1,
            address: "s1".into(),
        }),
    });
    let err = apply_command(&mut state, &command(join, 2), 1).unwrap_err();
    assert_eq!(err.code(), RejectionCode::NotBootstrapped);
}

fn first_region(peer_stores: &[u64]) -> Kind {
    Kind::RegionBootstrapped(RegionBootstrapped {
        region: Some(RegionDescriptor {
            region_id: 1,
            start_key: vec![],
            end_key: vec![],
            epoch: Some(RegionEpoch {
                version: 1,
                conf_ver: 1,
            }),
            peers: peer_stores
                .iter()
                .map(|s| RegionPeer {
                    peer_id: *s,
                    store_id: *s,
                })
                .collect(),
        }),
    })
}

#[test]
fn first_region_needs_joined_distinct_stores_and_happens_once() {
    let mut state = bootstrapped();
    let unknown = apply_command(&mut state, &command(first_region(&[1, 2, 9]), 2), 9);
    assert_eq!(unknown.unwrap_err().code(), RejectionCode::Malformed);
    let twice = apply_command(&mut state, &command(first_region(&[1, 1, 2]), 2), 10);
    assert_eq!(twice.unwrap_err().code(), RejectionCode::Malformed);
    apply_command(&mut state, &command(first_region(&[1, 2, 3]), 2), 11).unwrap();
    let again = apply_command(&mut state, &command(first_region(&[1, 2, 3]), 2), 12);
    assert_eq!(again.unwrap_err().code(), RejectionCode::RegionExists);
    assert_eq!(state.regions.len(), 1);
}

#[test]
fn unknown_format_version_is_rejected_not_misread() {
    let mut state = RootState::default();
    let mut cmd = command(grant("a", 1, 1000), 0);
    cmd.format_version = 99;
    let err = apply_command(&mut state, &cmd, 1).unwrap_err();
    assert_eq!(err.code(), RejectionCode::Malformed);
    assert!(state.lease.is_none());
}

fn epoch(version: u64, conf_ver: u64) -> Option<RegionEpoch> {
    Some(RegionEpoch { version, conf_ver })
}

fn with_first_region() -> RootState {
    let mut state = bootstrapped();
    apply_command(&mut state, &command(first_region(&[1, 2, 3]), 2), 10).unwrap();
    state
}

fn split(region_id: u64, at: &[u8], e: Option<RegionEpoch>, new_region_id: u64) -> Kind {
    Kind::SplitPlanned(SplitPlanned {
        region_id,
        expected_epoch: e,
        split_key: at.to_vec(),
        new_region_id,
        new_peers: (1..=3)
            .map(|s| RegionPeer {
                peer_id: new_region_id * 10 + s,
                store_id: s,
            })
            .collect(),
    })
}

fn apply(state: &mut RootState, kind: Kind) -> Result<(), Rejection> {
    let cursor = state.cursor + 1;
    apply_command(state, &command(kind, 100), cursor)
}

#[test]
fn split_is_planned_then_committed_and_bumps_the_version() {
    let mut state = with_first_region();
    apply(&mut state, split(1, b"m", epoch(1, 1), 2)).unwrap();
    assert_eq!(state.pending_changes.len(), 1);
    assert_eq!(state.regions.len(), 1, "planning changes no region");
    let busy = apply(&mut state, split(1, b"f", epoch(1, 1), 3)).unwrap_err();
    assert_eq!(busy.code(), RejectionCode::ChangePending);
    apply(
        &mut state,
        Kind::SplitCommitted(SplitCommitted { region_id: 1 }),
    )
    .unwrap();
    assert!(state.pending_changes.is_empty());
    let left = &state.regions[0];
    let right = &state.regions[1];
    assert_eq!((left.region_id, left.end_key.as_slice()), (1, &b"m"[..]));
    assert_eq!(
        (right.region_id, right.start_key.as_slice()),
        (2, &b"m"[..])
    );
    assert!(right.end_key.is_empty());
    assert_eq!(left.epoch, epoch(2, 1));
    assert_eq!(right.epoch, epoch(2, 1));
}

#[test]
fn split_rejects_stale_epoch_and_keys_outside_the_region() {
    let mut state = with_first_region();
    let stale = apply(&mut state, split(1, b"m", epoch(0, 1), 2)).unwrap_err();
    assert_eq!(stale.code(), RejectionCode::EpochMismatch);
    let edge = apply(&mut state, split(1, b"", epoch(1, 1), 2)).unwrap_err();
    assert_eq!(edge.code(), RejectionCode::Malformed);
    apply(&mut state, split(1, b"m", epoch(1, 1), 2)).unwrap();
    apply(
        &mut state,
        Kind::SplitCommitted(SplitCommitted { region_id: 1 }),
    )
    .unwrap();
    let outside = apply(&mut state, split(1, b"q", epoch(2, 1), 3)).unwrap_err();
    assert_eq!(outside.code(), RejectionCode::Malformed);
    let at_start = apply(&mut state, split(2, b"m", epoch(2, 1), 3)).unwrap_err();
    assert_eq!(at_start.code(), RejectionCode::Malformed);
    let reused_id = apply(&mut state, split(2, b"q", epoch(2, 1), 1)).unwrap_err();
    assert_eq!(reused_id.code(), RejectionCode::Malformed);
}

#[test]
fn cancelled_split_leaves_regions_untouched_and_frees_the_region() {
    let mut state = with_first_region();
    let before = state.regions.clone();
    apply(&mut state, split(1, b"m", epoch(1, 1), 2)).unwrap();
    apply(
        &mut state,
        Kind::SplitCancelled(SplitCancelled {
            region_id: 1,
            reason: "test".into(),
        }),
    )
    .unwrap();
    assert_eq!(state.regions, before);
    let nothing = apply(
        &mut state,
        Kind::SplitCommitted(SplitCommitted { region_id: 1 }),
    )
    .unwrap_err();
    assert_eq!(nothing.code(), RejectionCode::NothingPending);
    apply(&mut state, split(1, b"m", epoch(1, 1), 2)).unwrap();
}

#[test]
fn merge_joins_adjacent_regions_and_tombstones_the_source() {
    let mut state = with_first_region();
    apply(&mut state, split(1, b"m", epoch(1, 1), 2)).unwrap();
    apply(
        &mut state,
        Kind::SplitCommitted(SplitCommitted { region_id: 1 }),
    )
    .unwrap();
    let merge = Kind::MergePlanned(MergePlanned {
        source_region_id: 2,
        source_epoch: epoch(2, 1),
        target_region_id: 1,
        target_epoch: epoch(2, 1),
    });
    apply(&mut state, merge).unwrap();
    let target_busy = apply(&mut state, split(1, b"c", epoch(2, 1), 3)).unwrap_err();
    assert_eq!(
        target_busy.code(),
        RejectionCode::ChangePending,
        "the merge target is involved too"
    );
    apply(
        &mut state,
        Kind::MergeCommitted(MergeCommitted {
            source_region_id: 2,
        }),
    )
    .unwrap();
    assert_eq!(state.regions.len(), 1);
    let region = &state.regions[0];
    assert!(region.start_key.is_empty() && region.end_key.is_empty());
    assert_eq!(region.epoch, epoch(3, 1));
    assert_eq!(state.tombstoned_region_ids, vec![2]);
    let reuse = apply(&mut state, split(1, b"m", epoch(3, 1), 2)).unwrap_err();
    assert_eq!(
        reuse.code(),
        RejectionCode::Malformed,
        "region ids are never reused"
    );
}

#[test]
fn peer_change_replaces_a_peer_and_bumps_conf_ver() {
    let mut state = with_first_region();
    let join = Kind::StoreJoined(StoreJoined {
        store: Some(StoreDescriptor {
            store_id: 4,
            address: "s4".into(),
        }),
    });
    apply(&mut state, join).unwrap();
    let change = Kind::PeerChangePlanned(PeerChangePlanned {
        region_id: 1,
        expected_epoch: epoch(1, 1),
        add_peers: vec![RegionPeer {
            peer_id: 14,
            store_id: 4,
        }],
        remove_peer_ids: vec![3],
    });
    apply(&mut state, change).unwrap();
    apply(
        &mut state,
        Kind::PeerChangeCommitted(PeerChangeCommitted { region_id: 1 }),
    )
    .unwrap();
    let stores: Vec<u64> = state.regions[0].peers.iter().map(|p| p.store_id).collect();
    assert_eq!(stores, vec![1, 2, 4]);
    assert_eq!(state.regions[0].epoch, epoch(1, 2));
}

#[test]
fn peer_change_rejects_unknown_stores_and_two_peers_on_one_store() {
    let mut state = with_first_region();
    let unknown = Kind::PeerChangePlanned(PeerChangePlanned {
        region_id: 1,
        expected_epoch: epoch(1, 1),
        add_peers: vec![RegionPeer {
            peer_id: 9,
            store_id: 9,
        }],
        remove_peer_ids: vec![],
    });
    assert_eq!(
        apply(&mut state, unknown).unwrap_err().code(),
        RejectionCode::NoSuchStore
    );
    let doubled = Kind::PeerChangePlanned(PeerChangePlanned {
        region_id: 1,
        expected_epoch: epoch(1, 1),
        add_peers: vec![RegionPeer {
            peer_id: 9,
            store_id: 1,
        }],
        remove_peer_ids: vec![],
    });
    assert_eq!(
        apply(&mut state, doubled).unwrap_err().code(),
        RejectionCode::Malformed
    );
}

#[test]
fn fences_only_move_forward_from_the_value_seen() {
    let mut state = bootstrapped();
    let raise = |expected, new| {
        Kind::IdFenceRaised(IdFenceRaised {
            expected_fence: expected,
            new_fence: new,
        })
    };
    apply(&mut state, raise(0, 1000)).unwrap();
    assert_eq!(
        apply(&mut state, raise(0, 2000)).unwrap_err().code(),
        RejectionCode::FenceMismatch
    );
    assert_eq!(
        apply(&mut state, raise(1000, 1000)).unwrap_err().code(),
        RejectionCode::FenceMismatch
    );
    apply(&mut state, raise(1000, 2000)).unwrap();
    assert_eq!(state.id_fence, 2000);
    let tso = Kind::TsoFenceRaised(TsoFenceRaised {
        expected_fence: 0,
        new_fence: 5,
    });
    apply(&mut state, tso).unwrap();
    assert_eq!((state.tso_fence, state.id_fence), (5, 2000));
}

#[test]
fn gc_safe_point_only_moves_forward_and_a_refusal_changes_nothing() {
    let mut state = bootstrapped();
    let advance = |safe_point| Kind::GcSafePointAdvanced(GcSafePointAdvanced { safe_point });
    apply(&mut state, advance(100 << 18)).unwrap();
    assert_eq!(state.gc_safe_point, 100 << 18);
    for stale in [100 << 18, 99 << 18, 0] {
        let err = apply(&mut state, advance(stale)).unwrap_err();
        assert_eq!(err.code(), RejectionCode::SafePointNotForward);
        assert_eq!(state.gc_safe_point, 100 << 18, "a refusal changes nothing");
    }
    apply(&mut state, advance((100 << 18) + 1)).unwrap();
    assert_eq!(state.gc_safe_point, (100 << 18) + 1);
}

#[test]
fn gc_safe_point_is_refused_before_bootstrap_and_from_a_deposed_holder() {
    let mut fresh = RootState::default();
    let advance = Kind::GcSafePointAdvanced(GcSafePointAdvanced { safe_point: 5 });
    let err = apply_command(&mut fresh, &command(advance.clone(), 1), 1).unwrap_err();
    assert_eq!(err.code(), RejectionCode::NotBootstrapped);
    let mut state = bootstrapped();
    apply_command(&mut state, &command(grant("a", 1, 1000), 0), 20).unwrap();
    apply_command(&mut state, &command(grant("b", 2, 1000), 2000), 21).unwrap();
    let mut late = command(advance, 2001);
    late.lease_fence = Some(LeaseFence {
        holder_id: "a".into(),
        generation: 1,
    });
    let err = apply_command(&mut state, &late, 22).unwrap_err();
    assert_eq!(err.code(), RejectionCode::LeaseFenceFailed);
    assert_eq!(state.gc_safe_point, 0);
}

#[test]
fn catalog_changes_only_against_the_current_version() {
    let mut state = bootstrapped();
    let change = |expected: u64, bytes: &[u8]| {
        Kind::CatalogChanged(CatalogChanged {
            expected_version: expected,
            catalog: bytes.to_vec(),
            summary: "test".into(),
        })
    };
    apply(&mut state, change(0, b"one")).unwrap();
    let stale = apply(&mut state, change(0, b"two")).unwrap_err();
    assert_eq!(stale.code(), RejectionCode::CatalogVersionMismatch);
    assert_eq!(
        (state.catalog_version, state.catalog.as_slice()),
        (1, &b"one"[..])
    );
    let huge = apply(&mut state, change(1, &vec![0; CATALOG_BYTES_MAX + 1])).unwrap_err();
    assert_eq!(huge.code(), RejectionCode::Malformed);
}

#[test]
fn a_store_that_left_never_comes_back_under_its_id() {
    let mut state = bootstrapped();
    apply(
        &mut state,
        Kind::StoreLeft(StoreLeft {
            store_id: 3,
            reason: "disk died".into(),
        }),
    )
    .unwrap();
    let rejoin = Kind::StoreJoined(StoreJoined {
        store: Some(StoreDescriptor {
            store_id: 3,
            address: "new".into(),
        }),
    });
    assert_eq!(
        apply(&mut state, rejoin).unwrap_err().code(),
        RejectionCode::StoreIdTaken
    );
}

#[test]
fn lease_fence_rejects_a_deposed_holders_late_proposal() {
    let mut state = bootstrapped();
    apply_command(&mut state, &command(grant("a", 1, 1000), 0), 20).unwrap();
    apply_command(&mut state, &command(grant("b", 2, 1000), 2000), 21).unwrap();
    let mut late = command(
        Kind::IdFenceRaised(IdFenceRaised {
            expected_fence: 0,
            new_fence: 10,
        }),
        2001,
    );
    late.lease_fence = Some(LeaseFence {
        holder_id: "a".into(),
        generation: 1,
    });
    let err = apply_command(&mut state, &late, 22).unwrap_err();
    assert_eq!(err.code(), RejectionCode::LeaseFenceFailed);
    assert_eq!(state.id_fence, 0);
    late.lease_fence = Some(LeaseFence {
        holder_id: "b".into(),
        generation: 2,
    });
    apply_command(&mut state, &late, 23).unwrap();
    assert_eq!(state.id_fence, 10);
}

/// Live regions are sorted, never overlap, and cover the whole key space.
fn assert_regions_tile_the_key_space(state: &RootState) {
    let regions = &state.regions;
    assert!(!regions.is_empty());
    assert!(
        regions[0].start_key.is_empty(),
        "first region starts at -inf"
    );
    assert!(
        regions[regions.len() - 1].end_key.is_empty(),
        "last region ends at +inf"
    );
    for pair in regions.windows(2) {
        assert_eq!(
            pair[0].end_key, pair[1].start_key,
            "gap or overlap between regions"
        );
    }
}

#[test]
fn generated_region_histories_keep_regions_tiling_and_rejections_change_nothing() {
    use prost::Message;
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut state = with_first_region();
    let mut next_region_id = 2;
    let mut accepted = 0;
    let (mut splits, mut merges) = (0, 0);
    for _ in 0..3000 {
        let region = state.regions[(next() as usize) % state.regions.len()].clone();
        let stale = next() % 5 == 0;
        let mut region_epoch = region.epoch.unwrap_or_default();
        if stale {
            region_epoch.version += 1;
        }
        let key = vec![b'a' + (next() % 26) as u8, b'a' + (next() % 26) as u8];
        let kind = match next() % 7 {
            0 | 1 => {
                next_region_id += 1;
                split(region.region_id, &key, Some(region_epoch), next_region_id)
            }
            2 => Kind::SplitCommitted(SplitCommitted {
                region_id: region.region_id,
            }),
            3 => Kind::SplitCancelled(SplitCancelled {
                region_id: region.region_id,
                reason: String::new(),
            }),
            4 => {
                let neighbour = state
                    .regions
                    .iter()
                    .find(|r| r.start_key == region.end_key)
                    .cloned();
                match neighbour {
                    Some(target) if !region.end_key.is_empty() => {
                        Kind::MergePlanned(MergePlanned {
                            source_region_id: region.region_id,
                            source_epoch: Some(region_epoch),
                            target_region_id: target.region_id,
                            target_epoch: target.epoch,
                        })
                    }
                    _ => Kind::MergeCommitted(MergeCommitted {
                        source_region_id: region.region_id,
                    }),
                }
            }
            5 => Kind::MergeCommitted(MergeCommitted {
                source_region_id: region.region_id,
            }),
            // Around the current safe point: forward or not, at random.
            _ => Kind::GcSafePointAdvanced(GcSafePointAdvanced {
                safe_point: (state.gc_safe_point + 2).saturating_sub(next() % 4),
            }),
        };
        let gc_safe_point_before = state.gc_safe_point;
        let before = state.clone();
        let is_split = matches!(kind, Kind::SplitCommitted(_));
        let is_merge = matches!(kind, Kind::MergeCommitted(_));
        match apply(&mut state, kind) {
            Ok(()) => {
                accepted += 1;
                splits += usize::from(is_split);
                merges += usize::from(is_merge);
            }
            Err(_) => {
                let mut expected = before;
                expected.cursor = state.cursor;
                expected.last_stamp_ms = state.last_stamp_ms;
                assert_eq!(
                    state.encode_to_vec(),
                    expected.encode_to_vec(),
                    "a rejection must leave the state byte-identical"
                );
            }
        }
        assert_regions_tile_the_key_space(&state);
        assert!(
            state.gc_safe_point >= gc_safe_point_before,
            "the GC safe point moved backwards"
        );
        let mut ids: Vec<u64> = state.regions.iter().map(|r| r.region_id).collect();
        ids.extend(&state.tombstoned_region_ids);
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "a region id was reused");
        let mut involved: Vec<u64> = state.pending_changes.iter().map(|p| p.region_id).collect();
        let count = involved.len();
        involved.sort_unstable();
        involved.dedup();
        assert_eq!(involved.len(), count, "two pending changes on one region");
    }
    assert!(
        accepted > 100,
        "the generator should exercise accepted paths ({accepted})"
    );
    assert!(
        splits > 10 && merges > 5,
        "splits {splits}, merges {merges}: the generator should commit both"
    );
}
