//! One region's peer on this store: its descriptor and its raft group.
//!
//! **Invariant:** at most one `Peer` (one `Raft`) exists per region per
//! store; [`crate::store::StoreNode`] serializes their creation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::{
    KeyNotInRegion, NotLeader, RegionDescriptor, RegionEpoch, RegionError, RegionHeartbeat,
    ServerBusy,
};
use openraft::error::{ForwardToLeader, InitializeError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};
use rocksdb::DB;
use tokio::sync::watch;

use crate::config::BOOTSTRAP_CONF_VER;
use crate::error::RaftstoreError;
use crate::hibernate::{self, Action, AliveStores, HibernationState, Observation, Role};
use crate::keys::{self, CF_LOCK, CF_WRITE};
use crate::network::{RegionNetworkFactory, Transport};
use crate::operation::merge::MergeState;
use crate::storage::cf;
use crate::storage::state_machine::{KeyRange, MergeObserver, SharedDescriptor, SplitObserver};
use crate::storage::{RegionLogStore, RegionStateMachine};
use crate::traffic::TrafficCounters;
use crate::types::{RegionId, RegionRaft, StoreId};

/// A region's heartbeat asks RocksDB for its approximate size only every
/// this many heartbeats (and when a split changed its range). The estimate
/// covers flushed files only, so it moves at flushes and compactions, not
/// at each write; asking for every region at every heartbeat was a visible
/// share of an idle store's CPU.
pub const SIZE_REFRESH_HEARTBEATS: u64 = 20;

/// The last approximate size a heartbeat asked RocksDB for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SizeEstimate {
    bytes: u64,
    /// The region's epoch version when measured: a split changes the range.
    version: u64,
    /// Heartbeats that report `bytes` before it is asked again.
    heartbeats_left: u64,
}

/// What one heartbeat does about a region's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeStep {
    /// Report the known estimate again (with one heartbeat fewer left).
    Reuse(SizeEstimate),
    /// Ask RocksDB, then reuse the answer for `heartbeats_left` heartbeats.
    Measure { heartbeats_left: u64 },
}

fn size_step(known: Option<SizeEstimate>, version: u64, region_id: RegionId) -> SizeStep {
    match known {
        Some(known) if known.version == version && known.heartbeats_left > 0 => {
            SizeStep::Reuse(SizeEstimate {
                heartbeats_left: known.heartbeats_left - 1,
                ..known
            })
        }
        Some(_) => SizeStep::Measure {
            heartbeats_left: SIZE_REFRESH_HEARTBEATS - 1,
        },
        // The first wait depends on the region id, spreading the later
        // measurements of regions that started together over the period.
        None => SizeStep::Measure {
            heartbeats_left: region_id % SIZE_REFRESH_HEARTBEATS,
        },
    }
}

pub struct Peer {
    region_id: RegionId,
    store_id: StoreId,
    /// Changed only by this region's apply (see the state machine).
    descriptor: SharedDescriptor,
    raft: RegionRaft,
    db: Arc<DB>,
    transport: Arc<Transport>,
    key_count: Arc<AtomicU64>,
    /// Only the hibernation driver takes it, once per tick.
    hibernation: Mutex<HibernationState>,
    /// The hibernation driver's own view of the raft metrics: it tells
    /// whether they changed since the driver last looked, so a sleeping
    /// region whose metrics did not change is not observed again.
    hibernation_metrics: Mutex<watch::Receiver<RaftMetrics<StoreId, BasicNode>>>,
    /// A client request arrived since the driver's last tick.
    touched: AtomicBool,
    /// What this replica served (reads and writes it admitted).
    traffic: TrafficCounters,
    /// Only the heartbeat takes it, once per heartbeat.
    size_estimate: Mutex<Option<SizeEstimate>>,
}

pub fn range_of(descriptor: &RegionDescriptor) -> KeyRange {
    KeyRange {
        start: descriptor.start_key.clone(),
        end: descriptor.end_key.clone(),
    }
}

/// True when `a` is a newer epoch than `b` in either dimension.
pub fn epoch_is_newer(a: Option<&RegionEpoch>, b: Option<&RegionEpoch>) -> bool {
    let a = a.cloned().unwrap_or_default();
    let b = b.cloned().unwrap_or_default();
    a.version > b.version || a.conf_ver > b.conf_ver
}

pub fn region_error(kind: RegionErrorKind) -> RegionError {
    RegionError { kind: Some(kind) }
}

pub fn server_busy(reason: impl Into<String>) -> RegionError {
    region_error(RegionErrorKind::ServerBusy(ServerBusy {
        reason: reason.into(),
    }))
}

/// Whether this store creates the region's raft group by
/// `Raft::initialize`: only for a pristine group (no log, no vote) whose
/// first peer is this store, and only while the region is at its bootstrap
/// `conf_ver` — a region whose peers ever changed has a group elsewhere
/// already, and a replica started later (by `OpenPeer`, or a heartbeat
/// naming the region after the change) must learn everything from raft,
/// or it would found a second, conflicting group.
pub fn must_initialize(pristine: bool, descriptor: &RegionDescriptor, store_id: StoreId) -> bool {
    let first_peer = descriptor.peers.first().map(|peer| peer.store_id);
    let conf_ver = descriptor.epoch.unwrap_or_default().conf_ver;
    pristine && first_peer == Some(store_id) && conf_ver <= BOOTSTRAP_CONF_VER
}

impl Peer {
    /// Starts the raft group of `descriptor` on this store. Also returns
    /// whether the caller must [`Peer::initialize`] it ([`must_initialize`]).
    /// (Initializing is left to the caller so the peer is registered first
    /// and never started twice.)
    pub async fn start(
        db: Arc<DB>,
        store_id: StoreId,
        descriptor: RegionDescriptor,
        transport: Arc<Transport>,
        config: Arc<openraft::Config>,
        on_split: SplitObserver,
        on_merge: MergeObserver,
    ) -> Result<(Arc<Self>, bool), RaftstoreError> {
        let region_id = descriptor.region_id;
        let raft_error = |hint: String| RaftstoreError::Raft { region_id, hint };
        let mut log_store = RegionLogStore::new(db.clone(), region_id);
        let pristine = log_store
            .is_pristine()
            .await
            .map_err(|e| raft_error(e.to_string()))?;
        let key_count = Arc::new(AtomicU64::new(0));
        let initialize = must_initialize(pristine, &descriptor, store_id);
        let shared = SharedDescriptor::new(descriptor);
        let state_machine = RegionStateMachine::open(
            db.clone(),
            region_id,
            shared.clone(),
            key_count.clone(),
            on_split,
        )?
        .with_merge_observer(on_merge);
        let network = RegionNetworkFactory::new(region_id, transport.clone());
        let raft = RegionRaft::new(store_id, config, network, log_store, state_machine)
            .await
            .map_err(|e| raft_error(e.to_string()))?;
        let hibernation_metrics = Mutex::new(raft.metrics());
        let peer = Arc::new(Self {
            region_id,
            store_id,
            descriptor: shared,
            raft,
            db,
            transport,
            key_count,
            hibernation: Mutex::new(HibernationState::default()),
            hibernation_metrics,
            touched: AtomicBool::new(false),
            traffic: TrafficCounters::default(),
            size_estimate: Mutex::new(None),
        });
        Ok((peer, initialize))
    }

    /// Initializes the group with every peer of the descriptor; "already
    /// initialized" counts as success.
    pub async fn initialize(&self) -> Result<(), RaftstoreError> {
        let members: BTreeMap<StoreId, BasicNode> = self
            .descriptor()
            .peers
            .iter()
            .map(|peer| {
                let addr = self.transport.address_of(peer.store_id).unwrap_or_default();
                (peer.store_id, BasicNode { addr })
            })
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(region_id = self.region_id, "initialized region raft group");
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(error) => Err(RaftstoreError::Raft {
                region_id: self.region_id,
                hint: format!("initialize: {error}"),
            }),
        }
    }

    pub fn region_id(&self) -> RegionId {
        self.region_id
    }

    pub fn raft(&self) -> &RegionRaft {
        &self.raft
    }

    pub fn descriptor(&self) -> RegionDescriptor {
        self.descriptor.get()
    }

    /// The merge this region is frozen for, if its PrepareMerge applied
    /// here (see `operation::merge`).
    pub fn merge_state(&self) -> Option<MergeState> {
        self.descriptor.merge_state()
    }

    /// The last log index this replica applied (0 = none).
    pub fn applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |log_id| log_id.index)
    }

    /// The current descriptor when `epoch` is the current epoch, else the
    /// current descriptor as the error (for `EpochNotMatch`).
    pub fn check_epoch(
        &self,
        epoch: Option<&RegionEpoch>,
    ) -> Result<RegionDescriptor, RegionDescriptor> {
        let descriptor = self.descriptor();
        let current = descriptor.epoch.unwrap_or_default();
        let asked = epoch.cloned().unwrap_or_default();
        if current == asked {
            return Ok(descriptor);
        }
        Err(descriptor)
    }

    /// True when this peer believes it leads its region.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.store_id)
    }

    /// On-disk bytes of the region's locks and versions (RocksDB's
    /// estimate: flushed files only, so a fresh region reads 0).
    pub fn approximate_size_bytes(&self) -> u64 {
        let range = self.descriptor.range();
        let above_every_key = keys::above_every_data_key();
        let (write_start, write_end) = keys::write_range_bounds(&range.start, &range.end);
        let write_end = write_end.unwrap_or_else(|| above_every_key.clone());
        let lock_end = if range.end.is_empty() {
            above_every_key
        } else {
            keys::lock_key(&range.end).to_vec()
        };
        let spans = [
            (CF_WRITE, rocksdb::Range::new(&write_start, &write_end)),
            (
                CF_LOCK,
                rocksdb::Range::new(keys::lock_key(&range.start), &lock_end),
            ),
        ];
        spans
            .into_iter()
            .map(|(family, span)| {
                self.db
                    .get_approximate_sizes_cf(cf(&self.db, family), &[span])
                    .first()
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }

    pub fn key_not_in_region(descriptor: &RegionDescriptor, key: &[u8]) -> RegionError {
        region_error(RegionErrorKind::KeyNotInRegion(KeyNotInRegion {
            key: key.to_vec(),
            region_id: descriptor.region_id,
            start_key: descriptor.start_key.clone(),
            end_key: descriptor.end_key.clone(),
        }))
    }

    /// The leader this peer knows of (0 = unknown) and its address.
    pub fn leader_hint(&self) -> (StoreId, String) {
        let metrics = self.raft.metrics().borrow().clone();
        let Some(leader) = metrics.current_leader else {
            return (0, String::new());
        };
        let address = self
            .transport
            .address_of(leader)
            .or_else(|| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|node| node.addr.clone())
            })
            .unwrap_or_default();
        (leader, address)
    }

    /// `NotLeader` with the hint carried by openraft's forward error (or the
    /// metrics when it carries none).
    pub fn not_leader(&self, forward: &ForwardToLeader<StoreId, BasicNode>) -> RegionError {
        let (leader_store_id, leader_address) = match forward.leader_id {
            Some(leader) if leader != self.store_id => {
                let address = self
                    .transport
                    .address_of(leader)
                    .or_else(|| forward.leader_node.as_ref().map(|node| node.addr.clone()))
                    .unwrap_or_default();
                (leader, address)
            }
            _ => {
                let (leader, address) = self.leader_hint();
                if leader == self.store_id {
                    (0, String::new())
                } else {
                    (leader, address)
                }
            }
        };
        region_error(RegionErrorKind::NotLeader(NotLeader {
            region_id: self.region_id,
            leader_store_id,
            leader_address,
        }))
    }

    /// The region's report for the store heartbeat. Reads the raft metrics
    /// in place (cloning them copies the membership's maps, for a thousand
    /// regions per heartbeat).
    pub fn heartbeat(&self) -> RegionHeartbeat {
        let (leader_store_id, term, applied_index) = {
            let receiver = self.raft.metrics();
            let metrics = receiver.borrow();
            (
                metrics.current_leader.unwrap_or(0),
                metrics.current_term,
                metrics.last_applied.map_or(0, |log_id| log_id.index),
            )
        };
        let descriptor = self.descriptor();
        let version = descriptor.epoch.unwrap_or_default().version;
        RegionHeartbeat {
            region_id: self.region_id,
            leader_store_id,
            term,
            applied_index,
            key_count: self.key_count.load(Ordering::Relaxed),
            approximate_size_bytes: self.heartbeat_size_bytes(version),
            region: Some(descriptor),
            traffic: Some(self.traffic.snapshot()),
        }
    }

    /// [`Self::approximate_size_bytes`], asked of RocksDB only every
    /// [`SIZE_REFRESH_HEARTBEATS`] heartbeats or when the range changed
    /// (epoch `version`). After the first measurement a region waits a
    /// number of heartbeats that depends on its id, so the regions of a
    /// store that started together do not all ask at the same heartbeat.
    fn heartbeat_size_bytes(&self, version: u64) -> u64 {
        let mut estimate = self
            .size_estimate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let heartbeats_left = match size_step(*estimate, version, self.region_id) {
            SizeStep::Reuse(known) => {
                *estimate = Some(known);
                return known.bytes;
            }
            SizeStep::Measure { heartbeats_left } => heartbeats_left,
        };
        let bytes = self.approximate_size_bytes();
        *estimate = Some(SizeEstimate {
            bytes,
            version,
            heartbeats_left,
        });
        bytes
    }

    pub fn traffic(&self) -> &TrafficCounters {
        &self.traffic
    }

    /// A client request reached this region: the next hibernation tick
    /// wakes it. (Requests work while it sleeps: replication and read-index
    /// send their own messages; only timers are off.)
    pub fn touch(&self) {
        self.touched.store(true, Ordering::Relaxed);
    }

    /// Switches the raft timers on now (rather than at the next
    /// hibernation tick), for a caller that needs this replica to elect or
    /// to be replicated to at once (`Campaign`, `WakeRegion`). The touch
    /// makes the next tick agree and reset the idle clock.
    pub fn wake_now(&self) {
        let switches = self.raft.runtime_config();
        switches.tick(true);
        switches.heartbeat(true);
        switches.elect(true);
        self.touch();
    }

    /// `NotLeader` for a request only a leader serves, with the hint this
    /// replica has (none when it believes it leads but lost leadership).
    pub fn not_leader_here(&self) -> RegionError {
        self.not_leader(&ForwardToLeader {
            leader_id: None,
            leader_node: None,
        })
    }

    pub fn is_hibernating(&self) -> bool {
        self.hibernation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .hibernating
    }

    /// One tick of [`hibernate::run`]: observe, decide, switch timers.
    ///
    /// A sleeping region that was not touched, whose raft metrics did not
    /// change and whose stores' liveness did not change is skipped:
    /// [`hibernate::decide`] would see what it saw last tick and answer
    /// `Stay` without changing its state. Most of a store's regions sleep,
    /// and observing each of them every tick was the largest share of an
    /// idle store's CPU.
    pub async fn hibernation_tick(&self, now_ms: u64, alive: &AliveStores<'_>) {
        if self.asleep_and_unchanged(alive) {
            return;
        }
        let seen = self.observe(now_ms, alive);
        let action = {
            let mut state = self
                .hibernation
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            hibernate::decide(&mut state, &seen)
        };
        let switches = self.raft.runtime_config();
        match action {
            Action::Stay => {}
            Action::Hibernate => {
                switches.heartbeat(false);
                switches.elect(false);
                switches.tick(false);
                tracing::debug!(region_id = self.region_id, "region hibernates");
            }
            Action::Wake | Action::WakeAndElect => {
                switches.tick(true);
                switches.heartbeat(true);
                switches.elect(true);
                tracing::debug!(region_id = self.region_id, ?action, "region wakes");
            }
        }
        if action == Action::WakeAndElect {
            tracing::info!(
                region_id = self.region_id,
                dead_leader = ?seen.leader,
                "the leader's store is dead; calling an election"
            );
            if let Err(error) = self.raft.trigger().elect().await {
                tracing::warn!(region_id = self.region_id, %error, "could not call an election");
            }
        }
    }

    fn asleep_and_unchanged(&self, alive: &AliveStores<'_>) -> bool {
        if alive.recheck_sleeping() || self.touched.load(Ordering::Relaxed) {
            return false;
        }
        let hibernating = self
            .hibernation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .hibernating;
        // An error means the raft group is gone: observe (as before).
        hibernating
            && !self
                .hibernation_metrics
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .has_changed()
                .unwrap_or(true)
    }

    /// Reads the raft metrics in place and allocates nothing, and marks
    /// them seen for [`Self::asleep_and_unchanged`].
    fn observe(&self, now_ms: u64, alive: &AliveStores<'_>) -> Observation {
        let mut receiver = self
            .hibernation_metrics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let metrics = receiver.borrow_and_update();
        let role = match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            _ => Role::Other,
        };
        // The voters of every configuration (two during a joint change; a
        // voter of both appears twice, which neither `all` nor `min` minds).
        // `voter_ids()` would collect them into a new set.
        let voters = || {
            metrics
                .membership_config
                .membership()
                .get_joint_config()
                .iter()
                .flatten()
                .copied()
        };
        let last_log_index = metrics.last_log_index.unwrap_or(0);
        let replicated = role == Role::Leader
            && metrics.replication.as_ref().is_some_and(|progress| {
                voters()
                    .filter(|voter| *voter != self.store_id)
                    .all(|voter| {
                        progress
                            .get(&voter)
                            .and_then(|matched| matched.as_ref())
                            .map(|log_id| log_id.index)
                            == Some(last_log_index)
                    })
            });
        let voters_alive = voters().all(|voter| alive.is_alive(voter));
        let first_live_voter =
            voters().filter(|voter| alive.is_alive(*voter)).min() == Some(self.store_id);
        Observation {
            now_ms,
            role,
            leader: metrics.current_leader,
            leader_alive: metrics
                .current_leader
                .is_none_or(|leader| alive.is_alive(leader)),
            last_log_index,
            replicated,
            voters_alive,
            first_live_voter,
            touched: self.touched.swap(false, Ordering::Relaxed),
        }
    }

    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(region_id = self.region_id, %error, "region raft did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use arbor_proto::RegionPeer;

    use super::*;

    fn region(conf_ver: u64, first_store: StoreId) -> RegionDescriptor {
        RegionDescriptor {
            region_id: 1,
            epoch: Some(RegionEpoch {
                version: 3,
                conf_ver,
            }),
            peers: [first_store, 9]
                .into_iter()
                .map(|store_id| RegionPeer {
                    peer_id: store_id + 10,
                    store_id,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_heartbeat_measures_the_size_once_per_refresh_period_and_after_a_split() {
        let region_id = SIZE_REFRESH_HEARTBEATS + 3;
        let SizeStep::Measure { heartbeats_left } = size_step(None, 1, region_id) else {
            panic!("the first heartbeat measures");
        };
        assert_eq!(heartbeats_left, 3, "first wait spread by region id");
        let mut known = SizeEstimate {
            bytes: 4_096,
            version: 1,
            heartbeats_left: SIZE_REFRESH_HEARTBEATS - 1,
        };
        let mut measured_at = Vec::new();
        for heartbeat in 0..3 * SIZE_REFRESH_HEARTBEATS {
            known = match size_step(Some(known), 1, region_id) {
                SizeStep::Reuse(next) => {
                    assert_eq!(next.bytes, 4_096);
                    next
                }
                SizeStep::Measure { heartbeats_left } => {
                    measured_at.push(heartbeat);
                    SizeEstimate {
                        heartbeats_left,
                        ..known
                    }
                }
            };
        }
        let period = SIZE_REFRESH_HEARTBEATS;
        assert_eq!(
            measured_at,
            vec![period - 1, 2 * period - 1, 3 * period - 1],
            "one measurement per {period} heartbeats"
        );
        let fresh = SizeEstimate {
            heartbeats_left: SIZE_REFRESH_HEARTBEATS - 1,
            ..known
        };
        assert!(
            matches!(
                size_step(Some(fresh), 2, region_id),
                SizeStep::Measure { .. }
            ),
            "a split (new epoch version) measures at once"
        );
    }

    #[test]
    fn only_the_first_peer_of_a_pristine_region_at_its_bootstrap_conf_ver_initializes() {
        assert!(must_initialize(true, &region(BOOTSTRAP_CONF_VER, 4), 4));
        assert!(!must_initialize(false, &region(BOOTSTRAP_CONF_VER, 4), 4));
        assert!(!must_initialize(true, &region(BOOTSTRAP_CONF_VER, 9), 4));
        assert!(
            !must_initialize(true, &region(BOOTSTRAP_CONF_VER + 1, 4), 4),
            "a replica added by a peer change gets its state from raft"
        );
    }
}
