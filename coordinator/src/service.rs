//! The `Coordinator` gRPC service: heartbeats in, routes and views out.
//! Served by holder and standbys alike; only the singleton duties
//! (`GetTimestamps`, `AllocateIds`, `SplitAt`, `UnsplitAt`) need the lease, and a standby
//! answers them with the holder's name.

use std::sync::{Arc, Mutex, RwLock};

use arbor_metrics::{Counter, Gauge, Histogram, HistogramTimer, Registry};
use arbor_proto::coordinator_server::Coordinator as CoordinatorService;
use arbor_proto::*;
use arbor_root::RootClient;
use tonic::{Request, Response, Status};

use crate::error::CoordinatorError;
use crate::lease::LocalTenure;
use crate::view::ClusterView;

/// Most regions one heartbeat may report; a bound on a message from the network.
pub const HEARTBEAT_REGIONS_MAX: usize = 100_000;
/// Most events a cluster view carries.
pub const VIEW_EVENTS_MAX: u32 = 1_000;

/// Milliseconds since the Unix epoch; injected so tests can drive time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// State shared by the service and the driver loops of one coordinator.
pub struct Coordinator {
    pub id: String,
    pub address: String,
    pub root: RootClient,
    pub clock: Clock,
    pub view: RwLock<ClusterView>,
    pub tenure: Mutex<LocalTenure>,
    /// Async because refilling a window waits for root.
    pub allocators: tokio::sync::Mutex<crate::singleton::Allocators>,
    pub metrics: Arc<CoordinatorMetrics>,
}

/// The `Coordinator` methods whose latency is measured, in the order of
/// [`CoordinatorMetrics::rpc`].
#[derive(Debug, Clone, Copy)]
pub enum CoordinatorMethod {
    GetTimestamps,
    AllocateIds,
    StoreHeartbeat,
    LocateRegion,
    Status,
    ListStores,
    ClusterView,
    SplitAt,
    UnsplitAt,
}

impl CoordinatorMethod {
    pub const ALL: [CoordinatorMethod; 9] = [
        CoordinatorMethod::GetTimestamps,
        CoordinatorMethod::AllocateIds,
        CoordinatorMethod::StoreHeartbeat,
        CoordinatorMethod::LocateRegion,
        CoordinatorMethod::Status,
        CoordinatorMethod::ListStores,
        CoordinatorMethod::ClusterView,
        CoordinatorMethod::SplitAt,
        CoordinatorMethod::UnsplitAt,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CoordinatorMethod::GetTimestamps => "get_timestamps",
            CoordinatorMethod::AllocateIds => "allocate_ids",
            CoordinatorMethod::StoreHeartbeat => "store_heartbeat",
            CoordinatorMethod::LocateRegion => "locate_region",
            CoordinatorMethod::Status => "status",
            CoordinatorMethod::ListStores => "list_stores",
            CoordinatorMethod::ClusterView => "cluster_view",
            CoordinatorMethod::SplitAt => "split_at",
            CoordinatorMethod::UnsplitAt => "unsplit_at",
        }
    }
}

/// One coordinator's Prometheus series (`arbor_coordinator_*`): counted at
/// the RPC handlers; lease gauges are read from the tenure and the view at
/// scrape time ([`CoordinatorMetrics::observe`]).
pub struct CoordinatorMetrics {
    pub registry: Arc<Registry>,
    lease_generation: Gauge,
    is_holder: Gauge,
    root_cursor: Gauge,
    timestamps_served: Counter,
    ids_allocated: Counter,
    heartbeats_received: Counter,
    /// One per [`CoordinatorMethod::ALL`], resolved once.
    rpc: Vec<Histogram>,
}

impl CoordinatorMetrics {
    pub fn new() -> Arc<CoordinatorMetrics> {
        let registry = Arc::new(Registry::new());
        let r = &registry;
        // Static names, checked by `coordinator_metrics_register_every_series`.
        let valid = "static metric names are valid";
        let gauge = |name: &str, help: &str| r.gauge(name, help).expect(valid);
        let counter = |name: &str, help: &str| r.counter(name, help).expect(valid);
        let rpc = r
            .histogram_vec(
                "arbor_coordinator_rpc_duration_seconds",
                "Latency of Coordinator RPCs served, by method.",
                &["method"],
                arbor_metrics::LATENCY_BUCKETS_SECONDS,
            )
            .expect(valid);
        Arc::new(CoordinatorMetrics {
            lease_generation: gauge(
                "arbor_coordinator_lease_generation",
                "Generation of the coordinator lease as recorded in root (0 before the first grant).",
            ),
            is_holder: gauge(
                "arbor_coordinator_is_holder",
                "1 while this coordinator's local tenure holds the lease.",
            ),
            root_cursor: gauge(
                "arbor_coordinator_root_cursor",
                "Root cursor this coordinator's view reflects.",
            ),
            timestamps_served: counter(
                "arbor_coordinator_tso_timestamps_served_total",
                "Timestamps handed out by GetTimestamps.",
            ),
            ids_allocated: counter(
                "arbor_coordinator_ids_allocated_total",
                "Ids handed out by AllocateIds.",
            ),
            heartbeats_received: counter(
                "arbor_coordinator_heartbeats_received_total",
                "Store heartbeats received (valid or not).",
            ),
            rpc: CoordinatorMethod::ALL
                .iter()
                .map(|method| rpc.with(&[method.label()]))
                .collect(),
            registry,
        })
    }

    /// Measures one RPC until the returned guard drops.
    pub fn time(&self, method: CoordinatorMethod) -> HistogramTimer {
        self.rpc[method as usize].start_timer()
    }

    /// Reads the lease gauges from `coordinator` before every scrape. The
    /// hook holds it weakly: the coordinator owns these metrics.
    pub fn observe(&self, coordinator: &Arc<Coordinator>) -> Result<(), CoordinatorError> {
        let hook = arbor_metrics::weak_hook(coordinator, |coordinator: &Coordinator| {
            let metrics = &coordinator.metrics;
            metrics.is_holder.set(i64::from(coordinator.is_holder()));
            let view = coordinator.view();
            let generation = view.root.lease.as_ref().map_or(0, |l| l.generation);
            metrics.lease_generation.set_u64(generation);
            metrics.root_cursor.set_u64(view.root.cursor);
        });
        self.registry
            .on_scrape(hook)
            .map_err(|e| CoordinatorError::InvalidArgument {
                hint: e.to_string(),
            })
    }
}

impl Coordinator {
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    pub fn view(&self) -> std::sync::RwLockReadGuard<'_, ClusterView> {
        self.view
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn view_mut(&self) -> std::sync::RwLockWriteGuard<'_, ClusterView> {
        self.view
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn tenure(&self) -> LocalTenure {
        *self
            .tenure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_tenure(&self, tenure: LocalTenure) {
        *self
            .tenure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = tenure;
    }

    pub fn is_holder(&self) -> bool {
        self.tenure().holds(self.now_ms())
    }

    pub fn status(&self) -> CoordinatorStatus {
        let tenure = self.tenure();
        let holder = tenure.holds(self.now_ms());
        CoordinatorStatus {
            coordinator_id: self.id.clone(),
            address: self.address.clone(),
            role: if holder { "holder" } else { "standby" }.to_string(),
            generation: if holder { tenure.generation } else { 0 },
            cursor: self.view().root.cursor,
        }
    }
}

#[derive(Clone)]
pub struct CoordinatorHandle(pub Arc<Coordinator>);

#[tonic::async_trait]
impl CoordinatorService for CoordinatorHandle {
    async fn get_timestamps(
        &self,
        request: Request<GetTimestampsRequest>,
    ) -> Result<Response<GetTimestampsResponse>, Status> {
        let _timer = self.0.metrics.time(CoordinatorMethod::GetTimestamps);
        let count = request.into_inner().count;
        let (first, generation) = crate::singleton::timestamps(&self.0, count).await?;
        self.0.metrics.timestamps_served.add(u64::from(count));
        Ok(Response::new(GetTimestampsResponse {
            first,
            count,
            generation,
        }))
    }

    async fn allocate_ids(
        &self,
        request: Request<AllocateIdsRequest>,
    ) -> Result<Response<AllocateIdsResponse>, Status> {
        let _timer = self.0.metrics.time(CoordinatorMethod::AllocateIds);
        let count = request.into_inner().count;
        let (first, generation) = crate::singleton::ids(&self.0, count).await?;
        self.0.metrics.ids_allocated.add(u64::from(count));
        Ok(Response::new(AllocateIdsResponse {
            first,
            count,
            generation,
        }))
    }

    async fn store_heartbeat(
        &self,
        request: Request<StoreHeartbeatRequest>,
    ) -> Result<Response<StoreHeartbeatResponse>, Status> {
        let _timer = self.0.metrics.time(CoordinatorMethod::StoreHeartbeat);
        self.0.metrics.heartbeats_received.inc();
        let request = request.into_inner();
        let store = request
            .store
            .ok_or_else(|| CoordinatorError::InvalidArgument {
                hint: "heartbeat without store".into(),
            })?;
        if store.store_id == 0
            || store.address.is_empty()
            || request.regions.len() > HEARTBEAT_REGIONS_MAX
        {
            return Err(CoordinatorError::InvalidArgument {
                hint: format!(
                    "heartbeat needs a store id, an address and at most {HEARTBEAT_REGIONS_MAX} regions"
                ),
            }
            .into());
        }
        let now = self.0.now_ms();
        let mut view = self.0.view_mut();
        view.record_heartbeat(&store, request.regions, now);
        if let Some(stats) = request.stats {
            view.record_store_stats(store.store_id, stats);
        }
        Ok(Response::new(StoreHeartbeatResponse {
            regions: view.regions_of_store(store.store_id),
            cursor: view.root.cursor,
            joined: view.is_joined(store.store_id),
            stores: view.root.stores.clone(),
            gc_safe_point: view.root.gc_safe_point,
        }))
    }

    async fn locate_region(
        &self,
        request: Request<LocateRegionRequest>,
    ) -> Result<Response<LocateRegionResponse>, Status> {
        let _timer = self.0.metrics.time(CoordinatorMethod::LocateRegion);
        let key = request.into_inner().key;
        let view = self.0.view();
        let route = view
            .route_for_key(&key)
            .ok_or(CoordinatorError::NoRegionForKey {
                key,
                cursor: view.root.cursor,
            })?;
        Ok(Response::new(LocateRegionResponse {
            route: Some(route),
            cursor: view.root.cursor,
        }))
    }

    async fn status(
        &self,
        _request: Request<CoordinatorStatusRequest>,
    ) -> Result<Response<CoordinatorStatus>, Status> {
        let _timer = self.0.metrics.time(CoordinatorMethod::Status);
        Ok(Response::new(self.0.status()))
    }

    async fn list_stores(
        &self,
        _request: Request<ListStoresRequest>,
    ) -> Result<Response<ListStoresResponse>, Status> {
        let _timer = self.0.metrics.time(CoordinatorMethod::ListStores);
        let view = self.0.view();
        Ok(Response::new(ListStoresResponse {
            stores: view.root.stores.clone(),
            cursor: view.root.cursor,
        }))
    }

    async fn cluster_view(
        &self,
        request: Request<ClusterViewRequest>,
    ) -> Result<Response<ClusterViewResponse>, Status> {
        let _timer = self.0.metrics.time(CoordinatorMethod::ClusterView);
        let events_limit = request.into_inner().events_limit.min(VIEW_EVENTS_MAX);
        // Root peers and events are read live from root; an unreachable root
        // shows up as unreachable peers and no events, not as a failed view.
        let root_peers = self.0.root.status_all().await;
        let events = if events_limit == 0 {
            Vec::new()
        } else {
            self.0
                .root
                .list_events(0, events_limit)
                .await
                .unwrap_or_else(|error| {
                    tracing::debug!("events unavailable: {error}");
                    Vec::new()
                })
        };
        let now = self.0.now_ms();
        // Taken before the view lock: status() reads the view itself.
        let coordinator = self.0.status();
        let view = self.0.view();
        Ok(Response::new(ClusterViewResponse {
            coordinator: Some(coordinator),
            root: Some(view.root.clone()),
            regions: view.region_statuses(),
            stores: view.store_statuses(now),
            root_peers,
            events,
            observed_at_ms: now,
            coordinators: Vec::new(),
        }))
    }

    async fn split_at(
        &self,
        request: Request<SplitAtRequest>,
    ) -> Result<Response<SplitAtResponse>, Status> {
        let _timer = self.0.metrics.time(CoordinatorMethod::SplitAt);
        let key = request.into_inner().split_key;
        let halves = crate::split_at::split_at(&self.0, key).await?;
        Ok(Response::new(SplitAtResponse {
            left: halves.left,
            right: Some(halves.right),
        }))
    }

    async fn unsplit_at(
        &self,
        request: Request<UnsplitAtRequest>,
    ) -> Result<Response<UnsplitAtResponse>, Status> {
        let _timer = self.0.metrics.time(CoordinatorMethod::UnsplitAt);
        let key = request.into_inner().key;
        let region = crate::unsplit_at::unsplit_at(&self.0, key).await?;
        Ok(Response::new(UnsplitAtResponse {
            region: Some(region),
        }))
    }
}

#[cfg(test)]
mod metrics_tests {
    use super::*;

    #[test]
    fn coordinator_metrics_register_every_series() {
        let text = CoordinatorMetrics::new().registry.render();
        for series in [
            "arbor_coordinator_lease_generation 0",
            "arbor_coordinator_is_holder 0",
            "arbor_coordinator_root_cursor 0",
            "arbor_coordinator_tso_timestamps_served_total 0",
            "arbor_coordinator_ids_allocated_total 0",
            "arbor_coordinator_heartbeats_received_total 0",
            "arbor_coordinator_rpc_duration_seconds_count{method=\"get_timestamps\"} 0",
            "arbor_coordinator_rpc_duration_seconds_count{method=\"store_heartbeat\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
    }
}
