//! Which stores are up, down for a moment, or dead — from heartbeats alone.
//!
//! Dead means "replace its peers": only a store silent for longer than the
//! dead-after threshold, counted from the later of its last heartbeat and
//! the moment this coordinator started listening. A coordinator that just
//! started has heard from nobody, and must not take every store for dead.

use crate::view::{ClusterView, STORE_DOWN_AFTER_MS};

use super::Tick;

/// A store silent this long is dead and its peers are replaced elsewhere
/// (`--store-dead-after-ms` overrides it; tests lower it). Long against a
/// restart, so a store that is merely restarting keeps its replicas.
pub const STORE_DEAD_AFTER_DEFAULT_MS: u64 = 30_000;
/// The lowest dead-after threshold accepted: several heartbeat intervals, so
/// one late heartbeat never costs a store its replicas.
pub const STORE_DEAD_AFTER_MIN_MS: u64 = 1_000;

const _: () = assert!(STORE_DEAD_AFTER_DEFAULT_MS >= STORE_DOWN_AFTER_MS);
const _: () = assert!(STORE_DEAD_AFTER_MIN_MS <= STORE_DEAD_AFTER_DEFAULT_MS);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHealth {
    /// Heard from within [`STORE_DOWN_AFTER_MS`]: may receive new peers and
    /// leaders.
    Up,
    /// Silent for a while, not yet dead: left alone, neither replaced nor
    /// given work.
    Down,
    /// Silent past the dead-after threshold, or no longer a member of the
    /// cluster: its peers are replaced.
    Dead,
}

pub fn store_health(view: &ClusterView, store_id: u64, tick: &Tick) -> StoreHealth {
    if !view.is_joined(store_id) {
        return StoreHealth::Dead;
    }
    let last_ms = view.reports.get(&store_id).map_or(0, |r| r.received_at_ms);
    let silent_ms = tick
        .now_ms
        .saturating_sub(last_ms.max(tick.observing_since_ms));
    if silent_ms > tick.store_dead_after_ms {
        StoreHealth::Dead
    } else if last_ms != 0 && tick.now_ms.saturating_sub(last_ms) < STORE_DOWN_AFTER_MS {
        StoreHealth::Up
    } else {
        StoreHealth::Down
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{region_on, tick, view_of, NOW_MS};
    use super::*;

    #[test]
    fn a_silent_store_is_dead_only_after_the_threshold() {
        let view = view_of(
            &[1, 2],
            vec![region_on(1, b"", b"", &[1, 2])],
            &[1],
            &[1],
            NOW_MS,
        );
        let at = |elapsed_ms: u64| tick(NOW_MS + elapsed_ms);
        assert_eq!(store_health(&view, 1, &at(0)), StoreHealth::Up);
        assert_eq!(
            store_health(&view, 1, &at(STORE_DOWN_AFTER_MS)),
            StoreHealth::Down,
            "silent for a moment: down, not dead"
        );
        assert_eq!(
            store_health(&view, 1, &at(STORE_DEAD_AFTER_DEFAULT_MS)),
            StoreHealth::Down,
            "exactly the threshold is not past it"
        );
        assert_eq!(
            store_health(&view, 1, &at(STORE_DEAD_AFTER_DEFAULT_MS + 1)),
            StoreHealth::Dead
        );
    }

    #[test]
    fn silence_counts_only_from_when_the_coordinator_started_listening() {
        // Store 2 never heartbeat to this coordinator, which started at NOW.
        let view = view_of(
            &[1, 2],
            vec![region_on(1, b"", b"", &[1, 2])],
            &[1],
            &[1],
            NOW_MS,
        );
        let fresh = Tick {
            observing_since_ms: NOW_MS,
            ..tick(NOW_MS + STORE_DEAD_AFTER_DEFAULT_MS)
        };
        assert_eq!(store_health(&view, 2, &fresh), StoreHealth::Down);
        let later = Tick {
            now_ms: fresh.now_ms + 1,
            ..fresh
        };
        assert_eq!(store_health(&view, 2, &later), StoreHealth::Dead);
    }

    #[test]
    fn a_store_that_left_the_cluster_is_dead_at_once() {
        let mut view = view_of(
            &[1, 2],
            vec![region_on(1, b"", b"", &[1, 2])],
            &[1],
            &[1, 2],
            NOW_MS,
        );
        view.root.stores.retain(|s| s.store_id != 2);
        assert_eq!(store_health(&view, 2, &tick(NOW_MS)), StoreHealth::Dead);
    }
}
