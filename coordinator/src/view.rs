//! The cluster view: root's applied state plus what stores last reported.
//! Pure data and lookups; the driver in `server` feeds it.

use std::collections::BTreeMap;

use arbor_proto::{
    RegionDescriptor, RegionHeartbeat, RegionRoute, RegionStatus, RegionTraffic, RootState,
    StoreDescriptor, StoreStats, StoreStatus,
};

/// A store silent this long is reported as not alive.
pub const STORE_DOWN_AFTER_MS: u64 = 3_000;
/// Stores that must have joined before the first region is bootstrapped.
pub const INITIAL_REGION_REPLICAS: usize = 3;
/// Id of the region that covers the whole key space at bootstrap.
pub const FIRST_REGION_ID: u64 = 1;
/// Most stores one coordinator tracks heartbeats for; a bound on memory.
pub const TRACKED_STORES_MAX: usize = 4_096;

#[derive(Debug, Clone, Default)]
pub struct StoreReport {
    pub address: String,
    pub received_at_ms: u64,
    pub regions: Vec<RegionHeartbeat>,
    /// Disk and region bytes, as the store last reported them.
    pub stats: StoreStats,
    /// Per region id: traffic per second between this report and the one
    /// before it (absent for a region seen once).
    pub rates: BTreeMap<u64, TrafficRates>,
}

/// Traffic of one replica per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrafficRates {
    pub read_keys: f64,
    pub read_bytes: f64,
    pub written_keys: f64,
    pub written_bytes: f64,
}

/// Rates from two readings of a replica's monotonic counters `elapsed_ms`
/// apart; `None` when no time passed or a counter went back (the store
/// restarted and counts from zero again: one window is lost, not invented).
pub fn traffic_rates(
    before: &RegionTraffic,
    after: &RegionTraffic,
    elapsed_ms: u64,
) -> Option<TrafficRates> {
    if elapsed_ms == 0 {
        return None;
    }
    let per_sec = |before: u64, after: u64| -> Option<f64> {
        let delta = after.checked_sub(before)?;
        Some(delta as f64 * 1_000.0 / elapsed_ms as f64)
    };
    Some(TrafficRates {
        read_keys: per_sec(before.read_keys, after.read_keys)?,
        read_bytes: per_sec(before.read_bytes, after.read_bytes)?,
        written_keys: per_sec(before.written_keys, after.written_keys)?,
        written_bytes: per_sec(before.written_bytes, after.written_bytes)?,
    })
}

#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub root: RootState,
    pub reports: BTreeMap<u64, StoreReport>,
}

impl ClusterView {
    pub fn record_heartbeat(
        &mut self,
        store: &StoreDescriptor,
        regions: Vec<RegionHeartbeat>,
        now_ms: u64,
    ) {
        if !self.reports.contains_key(&store.store_id) && self.reports.len() >= TRACKED_STORES_MAX {
            return;
        }
        let previous = self.reports.get(&store.store_id);
        let rates = regions
            .iter()
            .filter_map(|heartbeat| {
                let previous = previous?;
                let before = previous
                    .regions
                    .iter()
                    .find(|r| r.region_id == heartbeat.region_id)?
                    .traffic
                    .as_ref()?;
                let after = heartbeat.traffic.as_ref()?;
                let elapsed_ms = now_ms.checked_sub(previous.received_at_ms)?;
                Some((
                    heartbeat.region_id,
                    traffic_rates(before, after, elapsed_ms)?,
                ))
            })
            .collect();
        let stats = previous.map(|p| p.stats).unwrap_or_default();
        self.reports.insert(
            store.store_id,
            StoreReport {
                address: store.address.clone(),
                received_at_ms: now_ms,
                regions,
                stats,
                rates,
            },
        );
    }

    /// Disk figures from a store's heartbeat (kept until the next one
    /// brings new figures).
    pub fn record_store_stats(&mut self, store_id: u64, stats: StoreStats) {
        if let Some(report) = self.reports.get_mut(&store_id) {
            report.stats = stats;
        }
    }

    /// Regions root places a peer of on `store_id`.
    pub fn regions_of_store(&self, store_id: u64) -> Vec<RegionDescriptor> {
        self.root
            .regions
            .iter()
            .filter(|r| r.peers.iter().any(|p| p.store_id == store_id))
            .cloned()
            .collect()
    }

    pub fn is_joined(&self, store_id: u64) -> bool {
        self.root.stores.iter().any(|s| s.store_id == store_id)
    }

    /// The freshest leader claim for a region: the report with the highest
    /// term wins, so a deposed leader's stale claim loses.
    pub fn leader_of(&self, region_id: u64) -> Option<&RegionHeartbeat> {
        self.reports
            .values()
            .flat_map(|report| report.regions.iter())
            .filter(|r| r.region_id == region_id && r.leader_store_id != 0)
            .max_by_key(|r| (r.term, r.applied_index))
    }

    /// The leader's report of a region: when it came, what it said, and
    /// the region's traffic rates on the leader.
    fn report_of(&self, region_id: u64) -> Option<(u64, &RegionHeartbeat, TrafficRates)> {
        let leader = self.leader_of(region_id)?.leader_store_id;
        let report = self.reports.get(&leader)?;
        let heartbeat = report.regions.iter().find(|r| r.region_id == region_id)?;
        let rates = report.rates.get(&region_id).copied().unwrap_or_default();
        Some((report.received_at_ms, heartbeat, rates))
    }

    /// The region whose range holds `key`.
    pub fn region_for_key(&self, key: &[u8]) -> Option<&RegionDescriptor> {
        self.root.regions.iter().find(|r| {
            r.start_key.as_slice() <= key && (r.end_key.is_empty() || key < r.end_key.as_slice())
        })
    }

    pub fn route_for_key(&self, key: &[u8]) -> Option<RegionRoute> {
        let region = self.region_for_key(key)?;
        let stores = region
            .peers
            .iter()
            .filter_map(|p| self.root.stores.iter().find(|s| s.store_id == p.store_id))
            .cloned()
            .collect();
        Some(RegionRoute {
            region: Some(region.clone()),
            leader_store_id: self
                .leader_of(region.region_id)
                .map_or(0, |h| h.leader_store_id),
            stores,
        })
    }

    pub fn region_statuses(&self) -> Vec<RegionStatus> {
        self.root
            .regions
            .iter()
            .map(|region| {
                let report = self.report_of(region.region_id);
                let rates = report.map(|(_, _, rates)| rates).unwrap_or_default();
                RegionStatus {
                    region: Some(region.clone()),
                    leader_store_id: report.map_or(0, |(_, h, _)| h.leader_store_id),
                    term: report.map_or(0, |(_, h, _)| h.term),
                    applied_index: report.map_or(0, |(_, h, _)| h.applied_index),
                    key_count: report.map_or(0, |(_, h, _)| h.key_count),
                    observed_at_ms: report.map_or(0, |(at, _, _)| at),
                    approximate_size_bytes: report.map_or(0, |(_, h, _)| h.approximate_size_bytes),
                    read_keys_per_sec: rates.read_keys,
                    read_bytes_per_sec: rates.read_bytes,
                    written_keys_per_sec: rates.written_keys,
                    written_bytes_per_sec: rates.written_bytes,
                }
            })
            .collect()
    }

    pub fn store_statuses(&self, now_ms: u64) -> Vec<StoreStatus> {
        self.root
            .stores
            .iter()
            .map(|store| {
                let report = self.reports.get(&store.store_id);
                let last = report.map_or(0, |r| r.received_at_ms);
                let leader_count = self
                    .root
                    .regions
                    .iter()
                    .filter(|r| {
                        self.leader_of(r.region_id).map(|h| h.leader_store_id)
                            == Some(store.store_id)
                    })
                    .count();
                StoreStatus {
                    store: Some(store.clone()),
                    last_heartbeat_ms: last,
                    alive: last != 0 && now_ms.saturating_sub(last) < STORE_DOWN_AFTER_MS,
                    region_count: self.regions_of_store(store.store_id).len() as u32,
                    leader_count: leader_count as u32,
                    stats: report.map(|r| r.stats),
                }
            })
            .collect()
    }

    /// Stores that heartbeat but root has not recorded as joined.
    pub fn stores_waiting_to_join(&self) -> Vec<StoreDescriptor> {
        self.reports
            .iter()
            .filter(|(id, _)| !self.is_joined(**id))
            .map(|(id, report)| StoreDescriptor {
                store_id: *id,
                address: report.address.clone(),
            })
            .collect()
    }

    /// The first region to bootstrap, once enough stores joined and none
    /// exists: the whole key space on the lowest-numbered stores.
    pub fn first_region_to_bootstrap(&self) -> Option<RegionDescriptor> {
        if !self.root.regions.is_empty() || self.root.stores.len() < INITIAL_REGION_REPLICAS {
            return None;
        }
        let peers = self
            .root
            .stores
            .iter()
            .take(INITIAL_REGION_REPLICAS)
            .map(|s| arbor_proto::RegionPeer {
                // Bootstrap peers take their store's id; later peers get ids
                // from the allocator.
                peer_id: s.store_id,
                store_id: s.store_id,
            })
            .collect();
        Some(RegionDescriptor {
            region_id: FIRST_REGION_ID,
            start_key: vec![],
            end_key: vec![],
            epoch: Some(arbor_proto::RegionEpoch {
                version: 1,
                conf_ver: 1,
            }),
            peers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_proto::RegionEpoch;

    fn store(id: u64) -> StoreDescriptor {
        StoreDescriptor {
            store_id: id,
            address: format!("127.0.0.1:{id}"),
        }
    }

    fn region(id: u64, start: &[u8], end: &[u8]) -> RegionDescriptor {
        RegionDescriptor {
            region_id: id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            epoch: Some(RegionEpoch {
                version: 1,
                conf_ver: 1,
            }),
            peers: vec![arbor_proto::RegionPeer {
                peer_id: 1,
                store_id: 1,
            }],
        }
    }

    fn heartbeat(region_id: u64, leader: u64, term: u64) -> RegionHeartbeat {
        RegionHeartbeat {
            region_id,
            leader_store_id: leader,
            term,
            applied_index: 0,
            key_count: 0,
            ..Default::default()
        }
    }

    #[test]
    fn region_for_key_respects_half_open_ranges() {
        let mut view = ClusterView::default();
        view.root.regions = vec![region(1, b"", b"m"), region(2, b"m", b"")];
        assert_eq!(view.region_for_key(b"").unwrap().region_id, 1);
        assert_eq!(view.region_for_key(b"lzz").unwrap().region_id, 1);
        assert_eq!(view.region_for_key(b"m").unwrap().region_id, 2);
        assert_eq!(view.region_for_key(b"\xff\xff").unwrap().region_id, 2);
    }

    #[test]
    fn leader_claim_with_highest_term_wins() {
        let mut view = ClusterView::default();
        view.record_heartbeat(&store(1), vec![heartbeat(1, 1, 3)], 10);
        view.record_heartbeat(&store(2), vec![heartbeat(1, 2, 4)], 10);
        assert_eq!(view.leader_of(1).unwrap().leader_store_id, 2);
    }

    #[test]
    fn first_region_waits_for_enough_stores_and_happens_once() {
        let mut view = ClusterView::default();
        view.root.stores = vec![store(1), store(2)];
        assert!(view.first_region_to_bootstrap().is_none());
        view.root.stores.push(store(3));
        let first = view.first_region_to_bootstrap().unwrap();
        assert_eq!(first.peers.len(), INITIAL_REGION_REPLICAS);
        view.root.regions.push(first);
        assert!(view.first_region_to_bootstrap().is_none());
    }

    #[test]
    fn silent_stores_are_reported_dead() {
        let mut view = ClusterView::default();
        view.root.stores = vec![store(1), store(2)];
        view.record_heartbeat(&store(1), vec![], 1_000);
        let statuses = view.store_statuses(1_000 + STORE_DOWN_AFTER_MS);
        assert!(!statuses[0].alive, "heard from too long ago");
        assert!(!statuses[1].alive, "never heard from");
        let statuses = view.store_statuses(1_001);
        assert!(statuses[0].alive);
    }

    #[test]
    fn only_unjoined_heartbeating_stores_wait_to_join() {
        let mut view = ClusterView::default();
        view.root.stores = vec![store(1)];
        view.record_heartbeat(&store(1), vec![], 1);
        view.record_heartbeat(&store(2), vec![], 1);
        let waiting = view.stores_waiting_to_join();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].store_id, 2);
    }

    fn with_traffic(
        mut heartbeat: RegionHeartbeat,
        read_keys: u64,
        written_keys: u64,
    ) -> RegionHeartbeat {
        heartbeat.traffic = Some(RegionTraffic {
            read_keys,
            read_bytes: read_keys * 10,
            written_keys,
            written_bytes: written_keys * 100,
        });
        heartbeat
    }

    #[test]
    fn region_rates_come_from_the_leaders_last_two_reports() {
        let mut view = ClusterView::default();
        view.root.regions = vec![region(1, b"", b"")];
        view.root.stores = vec![store(1), store(2)];
        view.record_heartbeat(
            &store(1),
            vec![with_traffic(heartbeat(1, 1, 2), 100, 10)],
            1_000,
        );
        // A follower's counters do not count: only the leader served.
        view.record_heartbeat(
            &store(2),
            vec![with_traffic(heartbeat(1, 1, 2), 0, 0)],
            1_000,
        );
        let first = &view.region_statuses()[0];
        assert_eq!(first.read_keys_per_sec, 0.0, "one report gives no rate");
        view.record_heartbeat(
            &store(1),
            vec![with_traffic(heartbeat(1, 1, 2), 600, 60)],
            1_500,
        );
        view.record_heartbeat(
            &store(2),
            vec![with_traffic(heartbeat(1, 1, 2), 0, 0)],
            1_500,
        );
        let status = &view.region_statuses()[0];
        assert_eq!(status.read_keys_per_sec, 1_000.0);
        assert_eq!(status.read_bytes_per_sec, 10_000.0);
        assert_eq!(status.written_keys_per_sec, 100.0);
        assert_eq!(status.written_bytes_per_sec, 10_000.0);
        assert_eq!(status.observed_at_ms, 1_500);
    }

    #[test]
    fn counters_that_went_back_give_no_rate_instead_of_a_wrong_one() {
        let before = RegionTraffic {
            read_keys: 500,
            ..RegionTraffic::default()
        };
        let restarted = RegionTraffic {
            read_keys: 3,
            ..RegionTraffic::default()
        };
        assert_eq!(traffic_rates(&before, &restarted, 500), None);
        assert_eq!(traffic_rates(&restarted, &before, 0), None);
        let rates = traffic_rates(&restarted, &before, 2_000).expect("forward counters");
        assert_eq!(rates.read_keys, 248.5);
    }

    #[test]
    fn store_status_carries_the_last_reported_disk_figures() {
        let mut view = ClusterView::default();
        view.root.stores = vec![store(1), store(2)];
        let stats = StoreStats {
            capacity_bytes: 1_000,
            available_bytes: 400,
            used_bytes: 7,
        };
        view.record_heartbeat(&store(1), vec![], 10);
        view.record_store_stats(1, stats);
        // The next heartbeat without figures keeps the last ones.
        view.record_heartbeat(&store(1), vec![], 20);
        let statuses = view.store_statuses(20);
        assert_eq!(statuses[0].stats, Some(stats));
        assert_eq!(statuses[1].stats, None, "never heard from");
    }
}
