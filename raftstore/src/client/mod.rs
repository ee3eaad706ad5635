//! The region client: what the SQL gateway uses to read and write keys
//! without knowing where regions live.
//!
//! It locates regions through `Coordinator.LocateRegion` (each coordinator in
//! turn), caches routes, sends to the leader it knows (any peer otherwise),
//! follows `NotLeader` hints, replaces a route by the newer regions an
//! `EpochNotMatch` names (so it routes through a split before any
//! coordinator has learnt it), drops a route on `KeyNotInRegion` and when
//! every peer answered `RegionNotFound`, and retries with backoff until
//! [`REQUEST_RETRY_DEADLINE_MS`] — then fails with a typed error.
//!
//! On top of routing it runs transactions ([`txn`]): timestamps from the
//! TSO ([`crate::tso`]), reads at a timestamp that resolve the locks they
//! meet ([`resolve`]), and commits — one-phase inside one region, Percolator
//! two-phase across regions.
//!
//! **Retries are safe:** every store request is idempotent for its
//! `start_ts` (a retried prewrite, commit, rollback or one-phase commit
//! answers what the first attempt did), so a write whose answer was lost is
//! simply sent again. A request whose outcome stays unknown after the
//! deadline (the primary's commit, say) fails typed; its transaction then
//! committed or not, and readers resolve it either way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arbor_proto::coordinator_client::CoordinatorClient;
use arbor_proto::region_error::Kind as RegionErrorKind;
use arbor_proto::store_client::StoreClient;
use arbor_proto::{
    CheckTxnStatusRequest, CheckTxnStatusResponse, CommitRequest, CommitResponse, GetRequest,
    GetResponse, LocateRegionRequest, Mutation, PessimisticLockRequest, PessimisticLockResponse,
    PrewriteRequest, PrewriteResponse, RegionContext, RegionDescriptor, RegionError, RegionRoute,
    ResolveLockRequest, ResolveLockResponse, RollbackRequest, RollbackResponse, ScanLocksRequest,
    ScanLocksResponse, ScanRequest, ScanResponse, TxnHeartbeatRequest, TxnHeartbeatResponse,
};
use tokio::time::Instant;
use tonic::Code;

use crate::config::{
    EPOCH_NOT_MATCH_REGIONS_MAX, KEY_BYTES_MAX, SCAN_ROWS_MAX, STORE_MESSAGE_BYTES_MAX,
};
use crate::error::RaftstoreError;
use crate::network::ChannelPool;
use crate::peer::epoch_is_newer;
use crate::tso::TsoClient;
use crate::types::{RegionId, StoreId};

pub mod admin;
pub mod pessimistic;
pub mod resolve;
pub mod txn;

pub use admin::SplitHalves;
pub use pessimistic::TxnKeepAlive;
pub use txn::{TxnMutation, TxnMutationKind};

/// A request gives up retrying region errors after this long.
pub const REQUEST_RETRY_DEADLINE_MS: u64 = 10_000;
/// First and largest pause between retries (doubling in between). The
/// largest is short against a failover (store liveness elects a new leader
/// about `liveness::STORE_DEAD_AFTER_MS` after a store dies), so a request
/// waiting it out notices the new leader soon after it is elected.
pub const RETRY_BACKOFF_MIN_MS: u64 = 20;
pub const RETRY_BACKOFF_MAX_MS: u64 = 200;
/// `NotLeader` answers with a fresh hint followed without pausing, in a row.
pub const LEADER_REDIRECTS_IMMEDIATE_MAX: u32 = 3;
/// One `LocateRegion` call gives up after this long.
pub const COORDINATOR_TIMEOUT_MS: u64 = 2_000;
/// One store call gives up after this long (above the store's own
/// `REQUEST_TIMEOUT_MS`, so the store answers `ServerBusy` first).
pub const STORE_CALL_TIMEOUT_MS: u64 = 6_000;
/// Most routes cached; past it the cache starts over.
pub const ROUTE_CACHE_REGIONS_MAX: usize = 65_536;

const _: () = assert!(STORE_CALL_TIMEOUT_MS > crate::config::REQUEST_TIMEOUT_MS);
const _: () = assert!(RETRY_BACKOFF_MIN_MS <= RETRY_BACKOFF_MAX_MS);

#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    Applied { existed: Vec<bool> },
    ConditionFailed { mutation_index: usize },
}

/// Cheap to clone; clones share the route cache and connections.
#[derive(Clone)]
pub struct RegionClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    coordinators: Vec<String>,
    retry_deadline: Duration,
    routes: RwLock<RouteCache>,
    pool: ChannelPool,
    tso: TsoClient,
}

/// Where a region is: its descriptor, the leader hint, its stores.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    region: RegionDescriptor,
    leader_store_id: StoreId,
    addresses: HashMap<StoreId, String>,
}

impl Route {
    fn from_proto(route: RegionRoute) -> Option<Self> {
        let region = route.region?;
        let addresses = route
            .stores
            .into_iter()
            .filter(|store| !store.address.is_empty())
            .map(|store| (store.store_id, store.address))
            .collect();
        Some(Self {
            region,
            leader_store_id: route.leader_store_id,
            addresses,
        })
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        key >= self.region.start_key.as_slice()
            && (self.region.end_key.is_empty() || key < self.region.end_key.as_slice())
    }

    pub(crate) fn context(&self) -> RegionContext {
        RegionContext {
            region_id: self.region.region_id,
            epoch: self.region.epoch,
        }
    }

    /// The leader when known and addressable, else the peers in turn.
    fn target(&self, rotation: usize) -> Option<(StoreId, String)> {
        if let Some(address) = self.addresses.get(&self.leader_store_id) {
            return Some((self.leader_store_id, address.clone()));
        }
        let peers: Vec<(StoreId, &String)> = self
            .region
            .peers
            .iter()
            .filter_map(|peer| {
                self.addresses
                    .get(&peer.store_id)
                    .map(|address| (peer.store_id, address))
            })
            .collect();
        if peers.is_empty() {
            return None;
        }
        let (store_id, address) = peers[rotation % peers.len()];
        Some((store_id, address.clone()))
    }
}

/// Routes keyed by region start key; ranges never overlap.
#[derive(Default)]
struct RouteCache {
    by_start: BTreeMap<Vec<u8>, Route>,
}

impl RouteCache {
    fn find(&self, key: &[u8]) -> Option<Route> {
        let (_, route) = self.by_start.range(..=key.to_vec()).next_back()?;
        route.contains(key).then(|| route.clone())
    }

    fn insert(&mut self, route: Route) {
        let start = route.region.start_key.clone();
        let end = route.region.end_key.clone();
        self.by_start.retain(|_, cached| {
            let cached_end = &cached.region.end_key;
            let before = !cached_end.is_empty() && cached_end.as_slice() <= start.as_slice();
            let after = !end.is_empty() && cached.region.start_key.as_slice() >= end.as_slice();
            before || after
        });
        if self.by_start.len() >= ROUTE_CACHE_REGIONS_MAX {
            self.by_start.clear();
        }
        self.by_start.insert(start, route);
    }

    fn remove_region(&mut self, region_id: RegionId) {
        self.by_start
            .retain(|_, route| route.region.region_id != region_id);
    }

    fn set_leader(&mut self, region_id: RegionId, leader_store_id: StoreId, address: &str) {
        for route in self.by_start.values_mut() {
            if route.region.region_id == region_id {
                route.leader_store_id = leader_store_id;
                if !address.is_empty() {
                    route.addresses.insert(leader_store_id, address.to_string());
                }
            }
        }
    }
}

pub(crate) enum Call {
    Get(GetRequest),
    Scan(ScanRequest),
    ScanLocks(ScanLocksRequest),
    Prewrite(PrewriteRequest),
    Commit(CommitRequest),
    Rollback(RollbackRequest),
    CheckTxnStatus(CheckTxnStatusRequest),
    ResolveLock(ResolveLockRequest),
    PessimisticLock(PessimisticLockRequest),
    TxnHeartbeat(TxnHeartbeatRequest),
}

pub(crate) enum Reply {
    Get(GetResponse),
    Scan(ScanResponse),
    ScanLocks(ScanLocksResponse),
    Prewrite(PrewriteResponse),
    Commit(CommitResponse),
    Rollback(RollbackResponse),
    CheckTxnStatus(CheckTxnStatusResponse),
    ResolveLock(ResolveLockResponse),
    PessimisticLock(PessimisticLockResponse),
    TxnHeartbeat(TxnHeartbeatResponse),
}

impl Reply {
    fn region_error(&self) -> Option<&RegionError> {
        match self {
            Reply::Get(reply) => reply.region_error.as_ref(),
            Reply::Scan(reply) => reply.region_error.as_ref(),
            Reply::ScanLocks(reply) => reply.region_error.as_ref(),
            Reply::Prewrite(reply) => reply.region_error.as_ref(),
            Reply::Commit(reply) => reply.region_error.as_ref(),
            Reply::Rollback(reply) => reply.region_error.as_ref(),
            Reply::CheckTxnStatus(reply) => reply.region_error.as_ref(),
            Reply::ResolveLock(reply) => reply.region_error.as_ref(),
            Reply::PessimisticLock(reply) => reply.region_error.as_ref(),
            Reply::TxnHeartbeat(reply) => reply.region_error.as_ref(),
        }
    }
}

/// A request's answer, the route it went to, and how many times it was
/// sent (more than once: an earlier attempt may have applied too).
pub(crate) struct Executed {
    pub(crate) route: Route,
    pub(crate) reply: Reply,
    pub(crate) sends: u32,
}

/// Why locating a key failed.
struct LocateFailure {
    any_coordinator_answered: bool,
    last_error: String,
}

/// What one attempt tells the retry loop. Short-lived and moved once, so
/// the size gap between variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Next {
    Done(Route, Reply),
    Fail(RaftstoreError),
    /// Retry; `pause` false for a fresh leader hint.
    Retry {
        pause: bool,
    },
}

/// Progress of one request through its retries.
struct RetryState {
    attempts: u32,
    /// Requests that reached a store (answered or not).
    sends: u32,
    rotation: usize,
    immediate_redirects: u32,
    /// `RegionNotFound` answers in a row.
    regions_not_found: usize,
    region_id: Option<RegionId>,
    locate_failure: Option<LocateFailure>,
    last_error: String,
}

/// A read below the GC safe point: no retry at that timestamp can succeed.
fn snapshot_too_old(refusal: arbor_proto::SnapshotTooOld) -> RaftstoreError {
    RaftstoreError::SnapshotTooOld {
        read_ts: refusal.read_ts,
        safe_point: refusal.safe_point,
    }
}

pub(crate) fn unexpected_reply(what: &str) -> RaftstoreError {
    RaftstoreError::Transport {
        address: String::new(),
        hint: format!("store answered a {what} request with another reply type"),
    }
}

fn timed<T>(message: T, timeout_ms: u64) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_millis(timeout_ms));
    request
}

impl RegionClient {
    pub fn new(coordinator_addresses: Vec<String>) -> Self {
        Self::with_retry_deadline(
            coordinator_addresses,
            Duration::from_millis(REQUEST_RETRY_DEADLINE_MS),
        )
    }

    /// A client giving up after `retry_deadline` instead of
    /// [`REQUEST_RETRY_DEADLINE_MS`] (tests use a short one).
    pub fn with_retry_deadline(
        coordinator_addresses: Vec<String>,
        retry_deadline: Duration,
    ) -> Self {
        let tso = TsoClient::new(coordinator_addresses.clone(), retry_deadline);
        Self {
            inner: Arc::new(ClientInner {
                coordinators: coordinator_addresses,
                retry_deadline,
                routes: RwLock::new(RouteCache::default()),
                pool: ChannelPool::default(),
                tso,
            }),
        }
    }

    /// One timestamp from the TSO, above every timestamp served before the
    /// call started.
    pub async fn timestamp(&self) -> Result<u64, RaftstoreError> {
        self.inner.tso.timestamp().await
    }

    /// The newest timestamp this client handed out (no RPC; 0 = none).
    pub(crate) fn newest_timestamp(&self) -> u64 {
        self.inner.tso.newest_timestamp()
    }

    /// The value of `key` at a fresh timestamp.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RaftstoreError> {
        check_key(key)?;
        let read_ts = self.timestamp().await?;
        self.get_at(key, read_ts).await
    }

    /// The value of `key` committed at or before `read_ts`. A lock that may
    /// commit below `read_ts` is resolved (or waited out) first, until
    /// [`resolve::LOCK_WAIT_DEADLINE_MS`].
    pub async fn get_at(
        &self,
        key: &[u8],
        read_ts: u64,
    ) -> Result<Option<Vec<u8>>, RaftstoreError> {
        check_key(key)?;
        let mut wait = resolve::LockWait::new();
        loop {
            let executed = self
                .execute(key, |route| {
                    Call::Get(GetRequest {
                        context: Some(route.context()),
                        key: key.to_vec(),
                        read_ts,
                    })
                })
                .await?;
            let Reply::Get(reply) = executed.reply else {
                return Err(unexpected_reply("get"));
            };
            if let Some(refusal) = reply.snapshot_too_old {
                return Err(snapshot_too_old(refusal));
            }
            match reply.locked {
                Some(lock) => self.handle_lock(&lock, &mut wait).await?,
                None => return Ok(reply.found.then_some(reply.value)),
            }
        }
    }

    /// [start, end) where an empty `end` means "to the end of the key space";
    /// at most `limit` pairs, in key order, across regions, at one fresh
    /// timestamp.
    pub async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RaftstoreError> {
        check_key(start)?;
        check_key(end)?;
        if limit == 0 || (!end.is_empty() && start >= end) {
            return Ok(Vec::new());
        }
        let read_ts = self.timestamp().await?;
        self.scan_at(start, end, limit, read_ts).await
    }

    /// Like [`RegionClient::scan`], at `read_ts` (locks resolved as by
    /// [`RegionClient::get_at`]).
    pub async fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        read_ts: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, RaftstoreError> {
        check_key(start)?;
        check_key(end)?;
        let mut pairs = Vec::new();
        if limit == 0 || (!end.is_empty() && start >= end) {
            return Ok(pairs);
        }
        let mut wait = resolve::LockWait::new();
        let mut cursor = start.to_vec();
        loop {
            let rows = (limit - pairs.len()).min(SCAN_ROWS_MAX);
            let rows = u32::try_from(rows).expect("SCAN_ROWS_MAX fits in u32");
            let executed = self
                .execute(&cursor, |route| {
                    Call::Scan(ScanRequest {
                        context: Some(route.context()),
                        start_key: cursor.clone(),
                        end_key: end.to_vec(),
                        limit: rows,
                        read_ts,
                        ignore_locks: false,
                    })
                })
                .await?;
            let Reply::Scan(reply) = executed.reply else {
                return Err(unexpected_reply("scan"));
            };
            if let Some(refusal) = reply.snapshot_too_old {
                return Err(snapshot_too_old(refusal));
            }
            if let Some(lock) = reply.locked {
                self.handle_lock(&lock, &mut wait).await?;
                continue;
            }
            let last_key = reply.pairs.last().map(|pair| pair.key.clone());
            pairs.extend(
                reply
                    .pairs
                    .into_iter()
                    .filter(|pair| {
                        pair.key >= cursor && (end.is_empty() || pair.key.as_slice() < end)
                    })
                    .map(|pair| (pair.key, pair.value)),
            );
            if pairs.len() >= limit {
                pairs.truncate(limit);
                return Ok(pairs);
            }
            match (reply.more, last_key) {
                (true, Some(mut last_key)) => {
                    // The smallest key after `last_key`.
                    last_key.push(0);
                    cursor = last_key;
                }
                _ => {
                    let region_end = executed.route.region.end_key;
                    if region_end.is_empty() || (!end.is_empty() && region_end.as_slice() >= end) {
                        return Ok(pairs);
                    }
                    cursor = region_end;
                }
            }
        }
    }

    /// Every lock in `[start, end)` (empty `end` = to the end of the key
    /// space), at most `limit`, in key order: the transactions in flight or
    /// abandoned and not yet resolved. For operators and tests.
    pub async fn scan_locks(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<arbor_proto::LockInfo>, RaftstoreError> {
        check_key(start)?;
        check_key(end)?;
        let mut locks = Vec::new();
        let mut cursor = start.to_vec();
        while locks.len() < limit && (end.is_empty() || cursor.as_slice() < end) {
            let rows = (limit - locks.len()).min(SCAN_ROWS_MAX);
            let rows = u32::try_from(rows).unwrap_or(u32::MAX);
            let executed = self
                .execute(&cursor, |route| {
                    Call::ScanLocks(ScanLocksRequest {
                        context: Some(route.context()),
                        start_key: cursor.clone(),
                        end_key: end.to_vec(),
                        limit: rows,
                    })
                })
                .await?;
            let Reply::ScanLocks(reply) = executed.reply else {
                return Err(unexpected_reply("scan_locks"));
            };
            let last_key = reply.locks.last().map(|lock| lock.key.clone());
            locks.extend(reply.locks);
            match (reply.more, last_key) {
                (true, Some(mut last_key)) => {
                    last_key.push(0);
                    cursor = last_key;
                }
                _ => {
                    let region_end = executed.route.region.end_key;
                    if region_end.is_empty() {
                        break;
                    }
                    cursor = region_end;
                }
            }
        }
        locks.truncate(limit);
        Ok(locks)
    }

    /// Applies the mutations as one transaction at a fresh timestamp, all
    /// or nothing, each condition checked against the newest committed
    /// version (and the mutations before it in the batch). One region: one
    /// raft entry (one-phase commit); several: two-phase commit. A write
    /// conflict is retried with a new timestamp a few times
    /// ([`txn::WRITE_CONFLICT_RETRIES_MAX`]).
    pub async fn write(&self, mutations: Vec<Mutation>) -> Result<WriteOutcome, RaftstoreError> {
        txn::write(self, mutations).await
    }

    /// Commits the writes of the transaction that started (and read) at
    /// `start_ts`, all or nothing, and returns its commit timestamp. A key
    /// another transaction committed after `start_ts` fails it with
    /// `WriteConflict`. No mutations: `Ok(start_ts)`, no request sent.
    /// The first mutation's key is the primary: a transaction that took
    /// pessimistic locks ([`Self::lock_keys`]) lists their primary first,
    /// and every key it locked (as `Lock` when unchanged).
    pub async fn commit(
        &self,
        start_ts: u64,
        mutations: Vec<TxnMutation>,
    ) -> Result<u64, RaftstoreError> {
        txn::commit(self, start_ts, mutations).await
    }

    /// Runs one request against the region holding `key`, retrying region
    /// errors until [`REQUEST_RETRY_DEADLINE_MS`]. `build` makes the request
    /// for the route found; the route used is returned with the reply.
    pub(crate) async fn execute<B>(&self, key: &[u8], build: B) -> Result<Executed, RaftstoreError>
    where
        B: Fn(&Route) -> Call,
    {
        let deadline = Instant::now() + self.inner.retry_deadline;
        let mut backoff_ms = RETRY_BACKOFF_MIN_MS;
        let mut state = RetryState {
            attempts: 0,
            sends: 0,
            rotation: 0,
            immediate_redirects: 0,
            regions_not_found: 0,
            region_id: None,
            locate_failure: None,
            last_error: String::new(),
        };
        loop {
            state.attempts += 1;
            let pause = match self.attempt(key, &build, &mut state).await {
                Next::Done(route, reply) => {
                    return Ok(Executed {
                        route,
                        reply,
                        sends: state.sends,
                    })
                }
                Next::Fail(error) => return Err(error),
                Next::Retry { pause } => pause,
            };
            let pause_ms = if pause { backoff_ms } else { 0 };
            if Instant::now() + Duration::from_millis(pause_ms) >= deadline {
                return Err(self.give_up(key, state));
            }
            if pause {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MAX_MS);
            }
        }
    }

    fn give_up(&self, key: &[u8], state: RetryState) -> RaftstoreError {
        match (state.region_id, state.locate_failure) {
            (_, Some(failure)) if !failure.any_coordinator_answered => {
                RaftstoreError::NoCoordinatorReachable {
                    addresses: self.inner.coordinators.clone(),
                    last_error: failure.last_error,
                }
            }
            (Some(region_id), _) => RaftstoreError::RegionUnavailable {
                region_id,
                attempts: state.attempts,
                last_error: state.last_error,
            },
            (None, failure) => RaftstoreError::RouteUnavailable {
                key: key.to_vec(),
                attempts: state.attempts,
                last_error: failure.map(|f| f.last_error).unwrap_or(state.last_error),
            },
        }
    }

    async fn attempt<B>(&self, key: &[u8], build: &B, state: &mut RetryState) -> Next
    where
        B: Fn(&Route) -> Call,
    {
        let route = match self.route_for(key).await {
            Ok(route) => {
                state.locate_failure = None;
                route
            }
            Err(failure) => {
                state.last_error = failure.last_error.clone();
                state.locate_failure = Some(failure);
                return Next::Retry { pause: true };
            }
        };
        let region_id = route.region.region_id;
        state.region_id = Some(region_id);
        let Some((store_id, address)) = route.target(state.rotation) else {
            state.last_error = format!("no address known for any peer of region {region_id}");
            self.forget_region(region_id);
            return Next::Retry { pause: true };
        };
        state.sends += 1;
        let reply = match self.send(&address, build(&route)).await {
            Ok(reply) => reply,
            Err(status) if status.code() == Code::InvalidArgument => {
                return Next::Fail(RaftstoreError::InvalidArgument {
                    hint: status.message().to_string(),
                })
            }
            Err(status) => {
                state.last_error = format!("store {store_id} at {address}: {status}");
                self.set_leader(region_id, 0, "");
                state.rotation += 1;
                return Next::Retry { pause: true };
            }
        };
        let Some(region_error) = reply.region_error().and_then(|error| error.kind.clone()) else {
            return Next::Done(route, reply);
        };
        state.last_error = format!("store {store_id}: {region_error:?}");
        if !matches!(region_error, RegionErrorKind::RegionNotFound(_)) {
            state.regions_not_found = 0;
        }
        self.handle_region_error(&route, store_id, region_error, state)
    }

    fn handle_region_error(
        &self,
        route: &Route,
        asked_store_id: StoreId,
        error: RegionErrorKind,
        state: &mut RetryState,
    ) -> Next {
        let region_id = route.region.region_id;
        match error {
            RegionErrorKind::NotLeader(hint) => {
                let fresh = hint.leader_store_id != 0 && hint.leader_store_id != asked_store_id;
                self.set_leader(region_id, hint.leader_store_id, &hint.leader_address);
                if !fresh {
                    state.rotation += 1;
                    return Next::Retry { pause: true };
                }
                state.immediate_redirects += 1;
                Next::Retry {
                    pause: state.immediate_redirects > LEADER_REDIRECTS_IMMEDIATE_MAX,
                }
            }
            RegionErrorKind::EpochNotMatch(current) => {
                if self.learn_regions(route, current) {
                    state.immediate_redirects += 1;
                    return Next::Retry {
                        pause: state.immediate_redirects > LEADER_REDIRECTS_IMMEDIATE_MAX,
                    };
                }
                // The store knows no newer region than we do: it lags (or
                // the coordinator does); ask another peer and re-learn.
                self.forget_region(region_id);
                state.rotation += 1;
                Next::Retry { pause: true }
            }
            RegionErrorKind::KeyNotInRegion(_) => {
                self.forget_region(region_id);
                Next::Retry { pause: true }
            }
            RegionErrorKind::RegionNotFound(_) => {
                // The store may not have started the region yet (a split not
                // applied there yet): try the other peers, and re-learn the
                // route only once every peer said so.
                state.regions_not_found += 1;
                state.rotation += 1;
                if state.regions_not_found >= route.region.peers.len().max(1) {
                    state.regions_not_found = 0;
                    self.forget_region(region_id);
                }
                Next::Retry { pause: true }
            }
            RegionErrorKind::ServerBusy(_) => {
                self.set_leader(region_id, 0, "");
                state.rotation += 1;
                Next::Retry { pause: true }
            }
            RegionErrorKind::RegionMerging(_) => {
                // Frozen for a merge: once it commits the target covers the
                // range, so back off and ask the coordinator again.
                self.forget_region(region_id);
                Next::Retry { pause: true }
            }
        }
    }

    async fn send(&self, address: &str, call: Call) -> Result<Reply, tonic::Status> {
        let channel = self
            .inner
            .pool
            .channel(address)
            .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        let mut client = StoreClient::new(channel)
            .max_decoding_message_size(STORE_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(STORE_MESSAGE_BYTES_MAX);
        match call {
            Call::Get(request) => client
                .get(timed(request, STORE_CALL_TIMEOUT_MS))
                .await
                .map(|reply| Reply::Get(reply.into_inner())),
            Call::Scan(request) => client
                .scan(timed(request, STORE_CALL_TIMEOUT_MS))
                .await
                .map(|reply| Reply::Scan(reply.into_inner())),
            Call::ScanLocks(request) => client
                .scan_locks(timed(request, STORE_CALL_TIMEOUT_MS))
                .await
                .map(|reply| Reply::ScanLocks(reply.into_inner())),
            Call::Prewrite(request) => client
                .prewrite(timed(request, STORE_CALL_TIMEOUT_MS))
                .await
                .map(|reply| Reply::Prewrite(reply.into_inner())),
            Call::Commit(request) => client
                .commit(timed(request, STORE_CALL_TIMEOUT_MS))
                .await
                .map(|reply| Reply::Commit(reply.into_inner())),
            Call::Rollback(request) => client
                .rollback(timed(request, STORE_CALL_TIMEOUT_MS))
                .await
                .map(|reply| Reply::Rollback(reply.into_inner())),
            Call::CheckTxnStatus(request) => client
                .check_txn_status(timed(request, STORE_CALL_TIMEOUT_MS))
                .await
                .map(|reply| Reply::CheckTxnStatus(reply.into_inner())),
            Call::ResolveLock(request) => client
                .resolve_lock(timed(request, STORE_CALL_TIMEOUT_MS))
                .await
                .map(|reply| Reply::ResolveLock(reply.into_inner())),
            Call::PessimisticLock(request) => client
                .pessimistic_lock(timed(request, STORE_CALL_TIMEOUT_MS))
                .await
                .map(|reply| Reply::PessimisticLock(reply.into_inner())),
            Call::TxnHeartbeat(request) => client
                .txn_heartbeat(timed(request, STORE_CALL_TIMEOUT_MS))
                .await
                .map(|reply| Reply::TxnHeartbeat(reply.into_inner())),
        }
    }

    /// Caches the regions an `EpochNotMatch` names when they are newer than
    /// `route` (same stores, so its addresses and leader hint carry over).
    /// False when they taught nothing new.
    fn learn_regions(&self, route: &Route, answer: arbor_proto::EpochNotMatch) -> bool {
        let mut regions = answer.regions;
        if regions.is_empty() {
            regions.extend(answer.current);
        }
        let newer = regions.iter().any(|region| {
            region.region_id == route.region.region_id
                && epoch_is_newer(region.epoch.as_ref(), route.region.epoch.as_ref())
        });
        if !newer {
            return false;
        }
        let mut routes = self
            .inner
            .routes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for region in regions.into_iter().take(EPOCH_NOT_MATCH_REGIONS_MAX) {
            routes.insert(Route {
                region,
                leader_store_id: route.leader_store_id,
                addresses: route.addresses.clone(),
            });
        }
        true
    }

    pub(crate) fn cached_route(&self, key: &[u8]) -> Option<Route> {
        let routes = self
            .inner
            .routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes.find(key)
    }

    fn forget_region(&self, region_id: RegionId) {
        let mut routes = self
            .inner
            .routes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes.remove_region(region_id);
    }

    fn set_leader(&self, region_id: RegionId, leader_store_id: StoreId, address: &str) {
        let mut routes = self
            .inner
            .routes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes.set_leader(region_id, leader_store_id, address);
    }

    /// The cached route of `key`, or a fresh one from the coordinators.
    async fn route_for(&self, key: &[u8]) -> Result<Route, LocateFailure> {
        if let Some(route) = self.cached_route(key) {
            return Ok(route);
        }
        let mut failure = LocateFailure {
            any_coordinator_answered: false,
            last_error: "no coordinator addresses configured".into(),
        };
        for address in &self.inner.coordinators {
            match self.locate_at(address, key).await {
                Ok(Some(route)) => {
                    let mut routes = self
                        .inner
                        .routes
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    routes.insert(route.clone());
                    return Ok(route);
                }
                Ok(None) => {
                    failure.any_coordinator_answered = true;
                    failure.last_error =
                        format!("coordinator {address} knows no region for the key");
                }
                Err(status) => {
                    let unreachable = matches!(
                        status.code(),
                        Code::Unavailable
                            | Code::DeadlineExceeded
                            | Code::Cancelled
                            | Code::Unknown
                    );
                    failure.any_coordinator_answered |= !unreachable;
                    failure.last_error = format!("coordinator {address}: {status}");
                }
            }
        }
        Err(failure)
    }

    async fn locate_at(&self, address: &str, key: &[u8]) -> Result<Option<Route>, tonic::Status> {
        let channel = self
            .inner
            .pool
            .channel(address)
            .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        let request = LocateRegionRequest { key: key.to_vec() };
        let reply = CoordinatorClient::new(channel)
            .locate_region(timed(request, COORDINATOR_TIMEOUT_MS))
            .await?
            .into_inner();
        Ok(reply
            .route
            .and_then(Route::from_proto)
            .filter(|route| route.contains(key)))
    }
}

pub(crate) fn check_key(key: &[u8]) -> Result<(), RaftstoreError> {
    if key.len() > KEY_BYTES_MAX {
        return Err(RaftstoreError::InvalidArgument {
            hint: format!(
                "key of {} bytes exceeds the {KEY_BYTES_MAX}-byte limit",
                key.len()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arbor_proto::{RegionEpoch, RegionPeer};

    use super::*;

    fn route(region_id: RegionId, start: &str, end: &str) -> Route {
        Route {
            region: RegionDescriptor {
                region_id,
                start_key: start.as_bytes().to_vec(),
                end_key: end.as_bytes().to_vec(),
                epoch: Some(RegionEpoch {
                    version: 1,
                    conf_ver: 1,
                }),
                peers: vec![
                    RegionPeer {
                        peer_id: 1,
                        store_id: 1,
                    },
                    RegionPeer {
                        peer_id: 2,
                        store_id: 2,
                    },
                ],
            },
            leader_store_id: 0,
            addresses: [(1, "a:1".to_string()), (2, "b:2".to_string())]
                .into_iter()
                .collect(),
        }
    }

    fn assert_send<T: Send>(_: &T) {}
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}

    #[test]
    fn the_client_and_its_futures_can_cross_tasks() {
        assert_shareable::<RegionClient>();
        let client = RegionClient::new(Vec::new());
        assert_send(&client.get(b"k"));
        assert_send(&client.scan(b"", b"", 1));
        assert_send(&client.write(Vec::new()));
        assert_send(&client.commit(1, Vec::new()));
        assert_send(&client.timestamp());
        assert_send(&client.scan_at(b"", b"", 1, 1));
    }

    #[test]
    fn the_route_cache_finds_the_region_holding_a_key() {
        let mut cache = RouteCache::default();
        cache.insert(route(1, "", "m"));
        cache.insert(route(2, "m", ""));
        assert_eq!(cache.find(b"").map(|r| r.region.region_id), Some(1));
        assert_eq!(cache.find(b"l").map(|r| r.region.region_id), Some(1));
        assert_eq!(cache.find(b"m").map(|r| r.region.region_id), Some(2));
        assert_eq!(cache.find(b"zzz").map(|r| r.region.region_id), Some(2));
        cache.remove_region(2);
        assert!(cache.find(b"zzz").is_none());
    }

    #[test]
    fn inserting_a_route_evicts_overlapping_ones() {
        let mut cache = RouteCache::default();
        cache.insert(route(1, "", "m"));
        cache.insert(route(2, "m", ""));
        cache.insert(route(3, "a", "n"));
        assert!(
            cache.find(b"").is_none(),
            "region 1 overlapped and was evicted"
        );
        assert_eq!(cache.find(b"b").map(|r| r.region.region_id), Some(3));
        assert!(
            cache.find(b"z").is_none(),
            "region 2 overlapped and was evicted"
        );
    }

    #[test]
    fn targets_prefer_the_leader_then_rotate_over_peers() {
        let mut cache = RouteCache::default();
        cache.insert(route(1, "", ""));
        let unknown_leader = cache.find(b"k").expect("route");
        assert_eq!(unknown_leader.target(0).map(|t| t.0), Some(1));
        assert_eq!(unknown_leader.target(1).map(|t| t.0), Some(2));
        cache.set_leader(1, 3, "c:3");
        let known = cache.find(b"k").expect("route");
        assert_eq!(known.target(0), Some((3, "c:3".to_string())));
    }

    fn with_version(mut route: Route, version: u64) -> Route {
        route.region.epoch = Some(RegionEpoch {
            version,
            conf_ver: 1,
        });
        route
    }

    #[test]
    fn an_epoch_not_match_teaches_both_halves_of_a_split_and_a_stale_one_nothing() {
        let client = RegionClient::new(Vec::new());
        let whole = route(1, "", "");
        client
            .inner
            .routes
            .write()
            .expect("routes")
            .insert(whole.clone());
        let left = with_version(route(1, "", "m"), 2);
        let right = with_version(route(7, "m", ""), 2);
        let stale = arbor_proto::EpochNotMatch {
            current: Some(whole.region.clone()),
            regions: vec![whole.region.clone()],
        };
        assert!(!client.learn_regions(&whole, stale), "nothing newer");
        let split = arbor_proto::EpochNotMatch {
            current: Some(left.region.clone()),
            regions: vec![left.region.clone(), right.region.clone()],
        };
        assert!(client.learn_regions(&whole, split));
        let found = |key: &[u8]| client.cached_route(key).map(|r| r.region.region_id);
        assert_eq!(found(b"a"), Some(1));
        assert_eq!(found(b"z"), Some(7));
        let learnt = client.cached_route(b"z").expect("right half cached");
        assert_eq!(
            learnt.addresses, whole.addresses,
            "same stores, same addresses"
        );
    }

    #[tokio::test]
    async fn a_client_without_reachable_coordinators_fails_typed_after_the_deadline() {
        // Port 1 on loopback refuses connections.
        let client = RegionClient::with_retry_deadline(
            vec!["127.0.0.1:1".to_string()],
            Duration::from_millis(300),
        );
        let error = client.get(b"k").await.expect_err("no coordinator to ask");
        assert!(
            matches!(error, RaftstoreError::NoCoordinatorReachable { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn oversized_requests_are_refused_before_any_network_call() {
        let client = RegionClient::new(Vec::new());
        let long_key = vec![0u8; KEY_BYTES_MAX + 1];
        assert!(matches!(
            client.get(&long_key).await,
            Err(RaftstoreError::InvalidArgument { .. })
        ));
        assert_eq!(
            client.scan(b"b", b"a", 10).await.expect("empty range"),
            Vec::new()
        );
        assert_eq!(
            client.write(Vec::new()).await.expect("empty batch"),
            WriteOutcome::Applied {
                existed: Vec::new()
            }
        );
        assert_eq!(client.commit(42, Vec::new()).await.expect("empty txn"), 42);
    }
}
