//! Idle regions hibernate; a dead store wakes the regions it led.
//!
//! A raft group that ticks costs CPU even with nothing to do: its leader
//! sends heartbeats and its followers run election timers. A store holds
//! a thousand regions, most of them idle, so idle groups switch their timers
//! off (openraft's runtime switches: tick, heartbeat, elect). Without
//! heartbeats, followers can no longer tell a dead leader from an idle one —
//! so the stores ping each other ([`crate::liveness`]), and when a store
//! goes silent the surviving replicas of every region it led wake up and
//! one of them calls an election at once. That also makes failover faster
//! than raft's own timeouts: it waits for the store to be declared dead,
//! not for a leader lease plus an election timeout.
//!
//! This module is the decision, pure: [`decide`] takes a region's
//! [`HibernationState`] and what was observed at one tick and returns the
//! [`Action`]; the driver ([`run`]) observes every peer of the store each
//! [`HIBERNATION_TICK_MS`] and applies the actions.
//!
//! **Invariants:**
//! - Followers hibernate before their leader does
//!   ([`LEADER_HIBERNATE_DELAY_MS`] later), so no follower's election timer
//!   runs while its leader is silent.
//! - A region hibernates only with a known, live leader and (for the
//!   leader) every voter alive and caught up; any new log entry or client
//!   request wakes it.
//! - Raft's safety never depends on this module: a wrong decision costs an
//!   election or a slow failover, never a lost or split write.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::liveness::StoreLiveness;
use crate::periodic::Periodic;
use crate::store::StoreNode;
use crate::types::StoreId;

/// A follower hibernates after this long without a new log entry.
pub const HIBERNATE_AFTER_IDLE_MS: u64 = 4_000;
/// A leader waits this much longer than its followers.
pub const LEADER_HIBERNATE_DELAY_MS: u64 = 1_000;
/// How often the driver observes every region of the store.
pub const HIBERNATION_TICK_MS: u64 = 200;
/// Every this many ticks the driver observes sleeping regions even when
/// nothing it watches changed: a backstop for a store the transport does
/// not know, whose liveness [`AliveStores`] asks directly and cannot
/// compare between ticks.
pub const SLEEPING_RECHECK_TICKS: u64 = 5;
/// A region that called an election for a dead leader calls again after
/// this long if it still has no live leader.
pub const ELECT_RETRY_MS: u64 = 1_000;

const _: () = assert!(HIBERNATION_TICK_MS * 2 < LEADER_HIBERNATE_DELAY_MS);

/// This store's part in the region's raft group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    /// Candidate or learner: never hibernates.
    Other,
}

/// What the driver saw of one region at one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub now_ms: u64,
    pub role: Role,
    /// The store the region's leader is on, when known.
    pub leader: Option<StoreId>,
    pub leader_alive: bool,
    pub last_log_index: u64,
    /// Leader only: every voter's replication has reached `last_log_index`.
    pub replicated: bool,
    /// Every voter's store is alive.
    pub voters_alive: bool,
    /// Among the live voters (this store included), this store has the
    /// lowest id: it is the one that calls the election when the leader's
    /// store is dead, so two survivors do not split the vote.
    pub first_live_voter: bool,
    /// A client request reached the region since the last tick.
    pub touched: bool,
}

/// What the driver keeps per region between ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HibernationState {
    pub hibernating: bool,
    last_log_index: u64,
    last_active_ms: u64,
    /// When this store last called an election for a dead leader.
    elected_at_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stay,
    /// Switch tick, heartbeat and election off.
    Hibernate,
    /// Switch them back on.
    Wake,
    /// Switch them on and call an election now.
    WakeAndElect,
}

impl HibernationState {
    /// The state of a region that just started (awake, active now).
    pub fn started(now_ms: u64) -> Self {
        Self {
            last_active_ms: now_ms,
            ..Self::default()
        }
    }
}

pub fn decide(state: &mut HibernationState, seen: &Observation) -> Action {
    let progressed = seen.last_log_index != state.last_log_index;
    if progressed || seen.touched {
        state.last_log_index = seen.last_log_index;
        state.last_active_ms = seen.now_ms;
    }
    let leader_dead = seen.role != Role::Leader && seen.leader.is_some() && !seen.leader_alive;
    if leader_dead {
        state.last_active_ms = seen.now_ms;
        let due = state
            .elected_at_ms
            .is_none_or(|at| seen.now_ms.saturating_sub(at) >= ELECT_RETRY_MS);
        if seen.first_live_voter && due {
            state.hibernating = false;
            state.elected_at_ms = Some(seen.now_ms);
            return Action::WakeAndElect;
        }
        return wake(state);
    }
    state.elected_at_ms = None;
    if progressed || seen.touched {
        return wake(state);
    }
    if state.hibernating {
        // A hibernating follower that no longer knows its leader (a
        // restart, say) lets raft find one.
        if seen.leader.is_none() {
            return wake(state);
        }
        return Action::Stay;
    }
    let idle_ms = seen.now_ms.saturating_sub(state.last_active_ms);
    let ready = match seen.role {
        Role::Follower => idle_ms >= HIBERNATE_AFTER_IDLE_MS && seen.leader.is_some(),
        Role::Leader => {
            idle_ms >= HIBERNATE_AFTER_IDLE_MS + LEADER_HIBERNATE_DELAY_MS
                && seen.replicated
                && seen.voters_alive
        }
        Role::Other => false,
    };
    if ready {
        state.hibernating = true;
        return Action::Hibernate;
    }
    Action::Stay
}

fn wake(state: &mut HibernationState) -> Action {
    if state.hibernating {
        state.hibernating = false;
        return Action::Wake;
    }
    Action::Stay
}

/// Which stores are alive, asked of [`StoreLiveness`] once per known store
/// at the start of a tick rather than once per region and voter: a
/// thousand regions ask about the same handful of stores, and each direct
/// question takes the liveness lock.
pub struct AliveStores<'a> {
    liveness: &'a StoreLiveness,
    known: Vec<(StoreId, bool)>,
    recheck_sleeping: bool,
}

impl<'a> AliveStores<'a> {
    pub fn new(liveness: &'a StoreLiveness, stores: impl IntoIterator<Item = StoreId>) -> Self {
        let mut known: Vec<(StoreId, bool)> = stores
            .into_iter()
            .map(|store_id| (store_id, liveness.is_alive(store_id)))
            .collect();
        known.sort_unstable();
        Self {
            liveness,
            known,
            recheck_sleeping: true,
        }
    }

    /// Sleeping regions need a fresh look this tick (set by [`run`]): the
    /// liveness of some store changed since the last tick, or the
    /// [`SLEEPING_RECHECK_TICKS`] backstop is due. True unless told.
    pub fn recheck_sleeping(&self) -> bool {
        self.recheck_sleeping
    }

    /// A store not known at the start of the tick is asked directly.
    pub fn is_alive(&self, store_id: StoreId) -> bool {
        match self.known.iter().find(|(known, _)| *known == store_id) {
            Some((_, alive)) => *alive,
            None => self.liveness.is_alive(store_id),
        }
    }
}

/// Observes every region of `node` each tick and applies the decisions,
/// until `stop` turns true.
pub async fn run(node: Arc<StoreNode>, liveness: Arc<StoreLiveness>, stop: watch::Receiver<bool>) {
    let mut periodic = Periodic::new(Duration::from_millis(HIBERNATION_TICK_MS), stop);
    let epoch = Instant::now();
    let mut previous: Option<Vec<(StoreId, bool)>> = None;
    let mut ticks: u64 = 0;
    while periodic.tick().await {
        ticks = ticks.wrapping_add(1);
        let now_ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let stores = node.transport().addresses().into_iter().map(|(id, _)| id);
        let changed =
            |alive: &AliveStores<'_>| previous.as_ref().is_none_or(|known| *known != alive.known);
        let mut alive = AliveStores::new(&liveness, stores);
        alive.recheck_sleeping = ticks % SLEEPING_RECHECK_TICKS == 0 || changed(&alive);
        for peer in node.peers() {
            peer.hibernation_tick(now_ms, &alive).await;
        }
        previous = Some(alive.known);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower(now_ms: u64, index: u64) -> Observation {
        Observation {
            now_ms,
            role: Role::Follower,
            leader: Some(1),
            leader_alive: true,
            last_log_index: index,
            replicated: false,
            voters_alive: true,
            first_live_voter: false,
            touched: false,
        }
    }

    fn leader(now_ms: u64, index: u64) -> Observation {
        Observation {
            role: Role::Leader,
            replicated: true,
            ..follower(now_ms, index)
        }
    }

    /// Runs ticks every HIBERNATION_TICK_MS from `from` to `to`; the first
    /// tick whose action is not Stay.
    fn first_action(
        state: &mut HibernationState,
        from: u64,
        to: u64,
        seen: impl Fn(u64) -> Observation,
    ) -> Option<(u64, Action)> {
        (from..=to)
            .step_by(HIBERNATION_TICK_MS as usize)
            .map(|now| (now, decide(state, &seen(now))))
            .find(|(_, action)| *action != Action::Stay)
    }

    #[test]
    fn idle_followers_hibernate_before_their_leader() {
        let mut follower_state = HibernationState::started(0);
        let mut leader_state = HibernationState::started(0);
        let (at, action) = first_action(&mut follower_state, 0, 20_000, |now| follower(now, 7))
            .expect("hibernates");
        assert_eq!(action, Action::Hibernate);
        let (leader_at, leader_action) =
            first_action(&mut leader_state, 0, 20_000, |now| leader(now, 7)).expect("hibernates");
        assert_eq!(leader_action, Action::Hibernate);
        assert!(
            leader_at >= at + LEADER_HIBERNATE_DELAY_MS - HIBERNATION_TICK_MS,
            "leader at {leader_at}, follower at {at}"
        );
        assert_eq!(
            decide(&mut follower_state, &follower(30_000, 7)),
            Action::Stay,
            "stays asleep"
        );
    }

    #[test]
    fn a_new_entry_or_a_request_wakes_a_hibernating_region() {
        let mut state = HibernationState::started(0);
        first_action(&mut state, 0, 20_000, |now| leader(now, 3)).expect("hibernates");
        assert!(state.hibernating);
        let touched = Observation {
            touched: true,
            ..leader(21_000, 3)
        };
        assert_eq!(decide(&mut state, &touched), Action::Wake);
        assert_eq!(
            decide(&mut state, &leader(21_200, 4)),
            Action::Stay,
            "awake already"
        );
        let mut follower_state = HibernationState::started(0);
        first_action(&mut follower_state, 0, 20_000, |now| follower(now, 3)).expect("hibernates");
        assert_eq!(
            decide(&mut follower_state, &follower(21_000, 4)),
            Action::Wake
        );
    }

    #[test]
    fn a_leader_with_a_lagging_or_dead_voter_stays_awake() {
        let mut lagging = HibernationState::started(0);
        let behind = |now| Observation {
            replicated: false,
            ..leader(now, 5)
        };
        assert_eq!(first_action(&mut lagging, 0, 30_000, behind), None);
        let mut dead_voter = HibernationState::started(0);
        let dead = |now| Observation {
            voters_alive: false,
            ..leader(now, 5)
        };
        assert_eq!(first_action(&mut dead_voter, 0, 30_000, dead), None);
    }

    #[test]
    fn the_first_live_voter_calls_an_election_when_the_leaders_store_dies() {
        let mut first = HibernationState::started(0);
        let mut second = HibernationState::started(0);
        first_action(&mut first, 0, 20_000, |now| follower(now, 9)).expect("hibernates");
        first_action(&mut second, 0, 20_000, |now| follower(now, 9)).expect("hibernates");
        let dead = |now, first_live_voter| Observation {
            leader_alive: false,
            first_live_voter,
            ..follower(now, 9)
        };
        assert_eq!(
            decide(&mut first, &dead(30_000, true)),
            Action::WakeAndElect
        );
        assert_eq!(decide(&mut second, &dead(30_000, false)), Action::Wake);
        assert_eq!(
            decide(&mut first, &dead(30_200, true)),
            Action::Stay,
            "one election per retry interval"
        );
        assert_eq!(
            decide(&mut first, &dead(30_000 + ELECT_RETRY_MS, true)),
            Action::WakeAndElect
        );
        // A new leader is known: back to normal, and it stays awake for a
        // full idle period first.
        let elected = Observation {
            leader: Some(2),
            ..follower(31_500, 10)
        };
        assert_eq!(decide(&mut second, &elected), Action::Stay);
        assert!(!second.hibernating);
        assert_eq!(
            first_action(
                &mut second,
                31_700,
                31_500 + HIBERNATE_AFTER_IDLE_MS - 1,
                |now| {
                    Observation {
                        leader: Some(2),
                        ..follower(now, 10)
                    }
                }
            ),
            None
        );
    }

    #[test]
    fn alive_stores_answer_for_known_and_unknown_stores_as_liveness_does() {
        let liveness = StoreLiveness::new(1);
        liveness.heard_from(2);
        let alive = AliveStores::new(&liveness, [1, 2]);
        assert_eq!(alive.known, vec![(1, true), (2, true)]);
        assert!(alive.recheck_sleeping(), "a standalone view rechecks");
        assert!(alive.is_alive(1), "this store");
        assert!(alive.is_alive(2), "heard from");
        assert_eq!(
            alive.is_alive(3),
            liveness.is_alive(3),
            "a store unknown at the start of the tick is asked directly"
        );
    }

    #[test]
    fn candidates_and_leaderless_followers_never_hibernate() {
        let mut candidate = HibernationState::started(0);
        let seen = |now| Observation {
            role: Role::Other,
            leader: None,
            ..follower(now, 1)
        };
        assert_eq!(first_action(&mut candidate, 0, 30_000, seen), None);
        let mut leaderless = HibernationState::started(0);
        let seen = |now| Observation {
            leader: None,
            ..follower(now, 1)
        };
        assert_eq!(first_action(&mut leaderless, 0, 30_000, seen), None);
    }
}
