//! Readable names and details of events, for `system.root_events`.

use arbor_proto::root_event::Kind;
use arbor_proto::{RegionEpoch, RegionPeer, RootEvent};

fn peers(peers: &[RegionPeer]) -> String {
    let list: Vec<String> = peers
        .iter()
        .map(|p| format!("{}@store{}", p.peer_id, p.store_id))
        .collect();
    format!("[{}]", list.join(","))
}

fn epoch(epoch: &Option<RegionEpoch>) -> String {
    let epoch = epoch.unwrap_or_default();
    format!("v{}/c{}", epoch.version, epoch.conf_ver)
}

fn key(key: &[u8]) -> String {
    key.iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

/// A short name and a readable line for an event.
pub fn describe_event(event: &RootEvent) -> (&'static str, String) {
    let Some(kind) = event.kind.as_ref() else {
        return ("unknown", String::new());
    };
    match kind {
        Kind::ClusterBootstrapped(e) => (
            "cluster_bootstrapped",
            format!("cluster_id={}", e.cluster_id),
        ),
        Kind::StoreJoined(e) => {
            let store = e.store.clone().unwrap_or_default();
            (
                "store_joined",
                format!("store_id={} address={}", store.store_id, store.address),
            )
        }
        Kind::StoreLeft(e) => (
            "store_left",
            format!("store_id={} reason={}", e.store_id, e.reason),
        ),
        Kind::IdFenceRaised(e) => (
            "id_fence_raised",
            format!("{} -> {}", e.expected_fence, e.new_fence),
        ),
        Kind::TsoFenceRaised(e) => (
            "tso_fence_raised",
            format!("{} -> {}", e.expected_fence, e.new_fence),
        ),
        Kind::CatalogChanged(e) => (
            "catalog_changed",
            format!(
                "version {} -> {}: {}",
                e.expected_version,
                e.expected_version + 1,
                e.summary
            ),
        ),
        Kind::RegionBootstrapped(e) => {
            let region = e.region.clone().unwrap_or_default();
            (
                "region_bootstrapped",
                format!(
                    "region_id={} peers={}",
                    region.region_id,
                    peers(&region.peers)
                ),
            )
        }
        Kind::RegionTombstoned(e) => (
            "region_tombstoned",
            format!(
                "region_id={} epoch={}",
                e.region_id,
                epoch(&e.expected_epoch)
            ),
        ),
        Kind::SplitPlanned(e) => (
            "split_planned",
            format!(
                "region_id={} epoch={} split_key={} new_region_id={} new_peers={}",
                e.region_id,
                epoch(&e.expected_epoch),
                key(&e.split_key),
                e.new_region_id,
                peers(&e.new_peers)
            ),
        ),
        Kind::SplitCommitted(e) => ("split_committed", format!("region_id={}", e.region_id)),
        Kind::SplitCancelled(e) => (
            "split_cancelled",
            format!("region_id={} reason={}", e.region_id, e.reason),
        ),
        Kind::MergePlanned(e) => (
            "merge_planned",
            format!(
                "source={} target={}",
                e.source_region_id, e.target_region_id
            ),
        ),
        Kind::MergeCommitted(e) => ("merge_committed", format!("source={}", e.source_region_id)),
        Kind::MergeCancelled(e) => (
            "merge_cancelled",
            format!("source={} reason={}", e.source_region_id, e.reason),
        ),
        Kind::PeerChangePlanned(e) => (
            "peer_change_planned",
            format!(
                "region_id={} add={} remove={:?}",
                e.region_id,
                peers(&e.add_peers),
                e.remove_peer_ids
            ),
        ),
        Kind::PeerChangeCommitted(e) => (
            "peer_change_committed",
            format!("region_id={}", e.region_id),
        ),
        Kind::PeerChangeCancelled(e) => (
            "peer_change_cancelled",
            format!("region_id={} reason={}", e.region_id, e.reason),
        ),
        Kind::GcSafePointAdvanced(e) => (
            "gc_safe_point_advanced",
            format!(
                "safe_point={} (physical {} ms)",
                e.safe_point,
                e.safe_point >> 18
            ),
        ),
        Kind::LeaseGranted(e) => (
            "lease_granted",
            format!(
                "holder={} address={} generation={} ttl_ms={}",
                e.holder_id, e.holder_address, e.generation, e.ttl_ms
            ),
        ),
        Kind::LeaseRenewed(e) => (
            "lease_renewed",
            format!(
                "holder={} generation={} ttl_ms={}",
                e.holder_id, e.generation, e.ttl_ms
            ),
        ),
        Kind::LeaseSealed(e) => (
            "lease_sealed",
            format!("holder={} generation={}", e.holder_id, e.generation),
        ),
        Kind::LeaseClosed(e) => (
            "lease_closed",
            format!("generation={} reason={}", e.generation, e.reason),
        ),
    }
}
