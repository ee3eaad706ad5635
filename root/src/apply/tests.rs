use arbor_proto::root_event::Kind;
use arbor_proto::*;

use super::*;

fn command(kind: Kind, stamp_ms: u64) -> RootCommand {
    RootCommand {
        format_version: ROOT_COMMAND_FORMAT_VERSION,
        event: Some(RootEvent { kind: Some(kind) }),
        stamp_ms,
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
