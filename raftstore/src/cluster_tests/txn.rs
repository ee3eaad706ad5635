//! Transactions over a real cluster split in two regions at [`SPLIT_KEY`]:
//! keys below it ("a".."l") live in the left region, keys above in the
//! right one. Each scenario uses keys of its own.

use std::path::Path;
use std::time::Duration;

use arbor_proto::txn_error::Kind as TxnErrorKind;
use arbor_proto::*;
use tokio::time::Instant;

use super::{put, Cluster, FIRST_SPLIT_REGION_ID, SPLIT_KEY, TEST_DEADLINE_SECS};
use crate::client::{Call, RegionClient, Reply};
use crate::error::RaftstoreError;
use crate::{TxnMutation, TxnMutationKind};

fn set(key: &str, value: &str) -> TxnMutation {
    TxnMutation {
        kind: TxnMutationKind::Put(value.as_bytes().to_vec()),
        key: key.as_bytes().to_vec(),
    }
}

async fn value_at(client: &RegionClient, key: &str, read_ts: u64) -> Option<String> {
    client
        .get_at(key.as_bytes(), read_ts)
        .await
        .expect("get_at")
        .map(|value| String::from_utf8(value).expect("utf-8 values"))
}

/// A prewrite sent the way a client would, without committing after.
async fn prewrite(
    client: &RegionClient,
    start_ts: u64,
    primary: &str,
    mutations: Vec<Mutation>,
    lock_ttl_ms: u64,
    one_pc: bool,
) -> PrewriteResponse {
    let key = mutations[0].key.clone();
    let executed = client
        .execute(&key, |route| {
            Call::Prewrite(PrewriteRequest {
                context: Some(route.context()),
                start_ts,
                primary_key: primary.as_bytes().to_vec(),
                lock_ttl_ms,
                mutations: mutations.clone(),
                one_pc,
            })
        })
        .await
        .expect("prewrite answered");
    let Reply::Prewrite(reply) = executed.reply else {
        panic!("a prewrite reply");
    };
    reply
}

async fn commit_keys(
    client: &RegionClient,
    start_ts: u64,
    commit_ts: u64,
    key: &str,
) -> CommitResponse {
    let executed = client
        .execute(key.as_bytes(), |route| {
            Call::Commit(CommitRequest {
                context: Some(route.context()),
                start_ts,
                commit_ts,
                keys: vec![key.as_bytes().to_vec()],
            })
        })
        .await
        .expect("commit answered");
    let Reply::Commit(reply) = executed.reply else {
        panic!("a commit reply");
    };
    reply
}

/// One scan request for `[key, key + "\xff")`, as the store answers it.
async fn scan_once(
    client: &RegionClient,
    key: &str,
    read_ts: u64,
    ignore_locks: bool,
) -> ScanResponse {
    let mut end = key.as_bytes().to_vec();
    end.push(0xff);
    let executed = client
        .execute(key.as_bytes(), |route| {
            Call::Scan(ScanRequest {
                context: Some(route.context()),
                start_key: key.as_bytes().to_vec(),
                end_key: end.clone(),
                limit: 10,
                read_ts,
                ignore_locks,
            })
        })
        .await
        .expect("scan answered");
    let Reply::Scan(reply) = executed.reply else {
        panic!("a scan reply");
    };
    reply
}

/// A transaction over both regions is invisible below its commit
/// timestamp and wholly visible from it on.
async fn cross_region_commit_is_atomic_in_time(client: &RegionClient) {
    let before = client.timestamp().await.expect("ts");
    let start_ts = client.timestamp().await.expect("ts");
    let commit_ts = client
        .commit(start_ts, vec![set("apricot", "1"), set("yew", "2")])
        .await
        .expect("cross-region commit");
    assert!(commit_ts > start_ts);
    let after = client.timestamp().await.expect("ts");
    for read_ts in [before, start_ts, commit_ts - 1] {
        assert_eq!(value_at(client, "apricot", read_ts).await, None);
        assert_eq!(value_at(client, "yew", read_ts).await, None);
    }
    for read_ts in [commit_ts, after] {
        assert_eq!(
            value_at(client, "apricot", read_ts).await.as_deref(),
            Some("1")
        );
        assert_eq!(value_at(client, "yew", read_ts).await.as_deref(), Some("2"));
    }
    // One scan over both regions at one timestamp sees both or neither.
    let ours = |pairs: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<Vec<u8>> {
        pairs
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| key.as_slice() == b"apricot" || key.as_slice() == b"yew")
            .collect()
    };
    let scanned = client
        .scan_at(b"apricot", b"yewz", 10, after)
        .await
        .expect("scan");
    assert_eq!(ours(scanned), vec![b"apricot".to_vec(), b"yew".to_vec()]);
    let earlier = client
        .scan_at(b"apricot", b"yewz", 10, before)
        .await
        .expect("scan");
    assert!(ours(earlier).is_empty());
}

/// Two transactions from the same snapshot writing one key: the first
/// committer wins, the second gets `WriteConflict` and leaves nothing.
async fn the_second_committer_of_a_key_loses(client: &RegionClient) {
    let first = client.timestamp().await.expect("ts");
    let second = client.timestamp().await.expect("ts");
    client
        .commit(first, vec![set("birch", "first"), set("yucca", "first")])
        .await
        .expect("the first committer wins");
    let lost = client
        .commit(second, vec![set("beech", "second"), set("yucca", "second")])
        .await
        .expect_err("the second committer loses");
    assert!(
        matches!(&lost, RaftstoreError::WriteConflict { key, start_ts, .. } if key == b"yucca" && *start_ts == second),
        "{lost}"
    );
    let one_region = client
        .commit(second, vec![set("yucca", "again")])
        .await
        .expect_err("one region (one-phase) loses too");
    assert!(
        matches!(one_region, RaftstoreError::WriteConflict { .. }),
        "{one_region}"
    );
    assert_eq!(
        client.get(b"yucca").await.expect("get"),
        Some(b"first".to_vec())
    );
    assert_eq!(
        client.get(b"beech").await.expect("get"),
        None,
        "rolled back"
    );
}

/// A client that prewrote both regions and died: a reader waits out the
/// lock's TTL, rolls the transaction back and reads the old values; the
/// transaction can never commit afterwards.
async fn a_dead_clients_locks_are_rolled_back_after_their_ttl(client: &RegionClient) {
    const TTL_MS: u64 = 600;
    client
        .write(vec![put("cedar", "old", MutationCondition::None)])
        .await
        .expect("old value");
    let start_ts = client.timestamp().await.expect("ts");
    for (key, value) in [("cedar", "uncommitted"), ("xylem", "uncommitted")] {
        let reply = prewrite(
            client,
            start_ts,
            "cedar",
            vec![put(key, value, MutationCondition::None)],
            TTL_MS,
            false,
        )
        .await;
        assert!(reply.error.is_none(), "{reply:?}");
    }
    // The scheduler's sampling scan ignores locks and sees committed keys;
    // a read at a timestamp is told about the lock instead.
    let sample = scan_once(client, "cedar", 0, true).await;
    assert_eq!(sample.locked, None);
    let sampled: Vec<(&[u8], &[u8])> = sample
        .pairs
        .iter()
        .map(|pair| (pair.key.as_slice(), pair.value.as_slice()))
        .collect();
    assert_eq!(sampled, vec![(&b"cedar"[..], &b"old"[..])]);
    let locks_of = |locks: Vec<arbor_proto::LockInfo>| -> Vec<Vec<u8>> {
        locks
            .into_iter()
            .filter(|lock| lock.start_ts == start_ts)
            .map(|lock| lock.key)
            .collect()
    };
    let held = client.scan_locks(b"", b"", 100).await.expect("scan locks");
    assert_eq!(
        locks_of(held),
        vec![b"cedar".to_vec(), b"xylem".to_vec()],
        "both regions' locks are listed, in key order"
    );
    let read_ts = client.timestamp().await.expect("ts");
    let blocked = scan_once(client, "cedar", read_ts, false).await;
    assert_eq!(blocked.locked.map(|lock| lock.start_ts), Some(start_ts));
    assert!(blocked.pairs.is_empty());

    let started = Instant::now();
    assert_eq!(
        client
            .get(b"xylem")
            .await
            .expect("a reader resolves the lock"),
        None,
        "never the uncommitted value"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(TTL_MS / 2),
        "the reader waited for the TTL ({waited:?})"
    );
    assert_eq!(
        client.get(b"cedar").await.expect("get"),
        Some(b"old".to_vec())
    );
    let left = client.scan_locks(b"", b"", 100).await.expect("scan locks");
    assert!(
        locks_of(left).is_empty(),
        "resolution leaves no lock behind"
    );
    let commit_ts = client.timestamp().await.expect("ts");
    let late = commit_keys(client, start_ts, commit_ts, "cedar").await;
    assert!(
        matches!(
            late.error.and_then(|e| e.kind),
            Some(TxnErrorKind::Aborted(_))
        ),
        "a rolled-back transaction never commits"
    );
    assert_eq!(
        client.get(b"cedar").await.expect("get"),
        Some(b"old".to_vec())
    );
}

/// A client that died after committing only the primary: a reader of a
/// secondary finds the primary committed and commits the secondary, at
/// once (no TTL wait).
async fn a_committed_primary_resolves_its_secondaries(client: &RegionClient) {
    const LONG_TTL_MS: u64 = 30_000;
    let start_ts = client.timestamp().await.expect("ts");
    for key in ["dogwood", "xerox"] {
        let reply = prewrite(
            client,
            start_ts,
            "dogwood",
            vec![put(key, "committed", MutationCondition::None)],
            LONG_TTL_MS,
            false,
        )
        .await;
        assert!(reply.error.is_none(), "{reply:?}");
    }
    let commit_ts = client.timestamp().await.expect("ts");
    let primary = commit_keys(client, start_ts, commit_ts, "dogwood").await;
    assert!(primary.error.is_none(), "{primary:?}");
    let started = Instant::now();
    assert_eq!(
        client.get(b"xerox").await.expect("resolved"),
        Some(b"committed".to_vec())
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no TTL wait");
    assert_eq!(
        value_at(client, "xerox", commit_ts - 1).await,
        None,
        "committed at the primary's commit_ts"
    );
}

/// The same one-phase commit sent twice (a retry after a lost answer)
/// commits once and answers the same commit timestamp both times, its
/// condition not failed by its own first attempt.
async fn a_retried_one_phase_commit_is_idempotent(client: &RegionClient) {
    let start_ts = client.timestamp().await.expect("ts");
    let mutations = vec![
        put("elm", "1", MutationCondition::MustNotExist),
        put("fir", "2", MutationCondition::MustNotExist),
    ];
    let first = prewrite(client, start_ts, "elm", mutations.clone(), 1_000, true).await;
    assert!(first.error.is_none(), "{first:?}");
    assert!(first.one_pc_commit_ts > start_ts);
    assert_eq!(first.existed, vec![false, false]);
    let again = prewrite(client, start_ts, "elm", mutations, 1_000, true).await;
    assert_eq!(again, first, "the retry answers the first commit");
    let commit_ts = first.one_pc_commit_ts;
    assert_eq!(
        value_at(client, "elm", commit_ts).await.as_deref(),
        Some("1")
    );
    assert_eq!(value_at(client, "fir", commit_ts - 1).await, None);
    let versions = client
        .scan_at(b"elm", b"fiz", 10, u64::MAX - 1)
        .await
        .expect("scan");
    assert_eq!(versions.len(), 2);
}

fn locks_of(locks: Vec<arbor_proto::LockInfo>, start_ts: u64) -> Vec<(Vec<u8>, i32)> {
    locks
        .into_iter()
        .filter(|lock| lock.start_ts == start_ts)
        .map(|lock| (lock.key, lock.kind))
        .collect()
}

/// `SELECT ... FOR UPDATE` in both regions: a writer of a locked key waits
/// — past one lock TTL, because heartbeats keep the holder alive — until
/// the holder commits, then wins on its own retry; readers never wait.
async fn select_for_update_holds_off_writers_until_the_holder_commits(client: &RegionClient) {
    let start_ts = client.timestamp().await.expect("ts");
    let keys = vec![b"ginkgo".to_vec(), b"yaupon".to_vec()];
    client
        .lock_keys(start_ts, b"ginkgo", keys.clone())
        .await
        .expect("locks taken");
    let _alive = client.keep_alive(start_ts, b"ginkgo".to_vec());
    let held = client.scan_locks(b"", b"", 100).await.expect("scan locks");
    let pessimistic = MutationOp::PessimisticLock as i32;
    assert_eq!(
        locks_of(held, start_ts),
        vec![
            (b"ginkgo".to_vec(), pessimistic),
            (b"yaupon".to_vec(), pessimistic)
        ]
    );
    let started = Instant::now();
    assert_eq!(
        client.get(b"yaupon").await.expect("readers do not wait"),
        None
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            let outcome = client
                .write(vec![put("yaupon", "writer", MutationCondition::None)])
                .await;
            (outcome, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(crate::config::LOCK_TTL_MS + 500)).await;
    assert!(
        !writer.is_finished(),
        "the writer still waits one TTL later: heartbeats keep the lock alive"
    );
    let committed_at = Instant::now();
    client
        .commit(
            start_ts,
            vec![
                set("ginkgo", "holder"),
                TxnMutation {
                    kind: TxnMutationKind::Lock,
                    key: b"yaupon".to_vec(),
                },
            ],
        )
        .await
        .expect("the holder commits");
    let (outcome, finished_at) = writer.await.expect("writer task");
    outcome.expect("the writer succeeds after the holder");
    assert!(
        finished_at >= committed_at,
        "not before the holder's commit"
    );
    assert_eq!(
        client.get(b"yaupon").await.expect("get"),
        Some(b"writer".to_vec())
    );
    assert_eq!(
        client.get(b"ginkgo").await.expect("get"),
        Some(b"holder".to_vec())
    );
    let left = client.scan_locks(b"", b"", 100).await.expect("scan locks");
    assert!(locks_of(left, start_ts).is_empty());
}

/// A lock on a row changed since the snapshot is a write conflict at once;
/// a rollback releases locks (a waiting writer goes on at once) and the
/// transaction cannot lock again.
async fn stale_locks_conflict_and_rollback_releases_them(client: &RegionClient) {
    let stale_ts = client.timestamp().await.expect("ts");
    client
        .write(vec![put("hazel", "newer", MutationCondition::None)])
        .await
        .expect("a newer write");
    let conflict = client
        .lock_keys(stale_ts, b"hazel", vec![b"hazel".to_vec()])
        .await
        .expect_err("the row changed after the snapshot");
    assert!(
        matches!(conflict, RaftstoreError::WriteConflict { .. }),
        "{conflict}"
    );

    let start_ts = client.timestamp().await.expect("ts");
    let keys = vec![b"holly".to_vec(), b"yarrow".to_vec()];
    client
        .lock_keys(start_ts, b"holly", keys.clone())
        .await
        .expect("locks taken");
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .write(vec![put("yarrow", "writer", MutationCondition::None)])
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "blocked by the lock");
    let released_at = Instant::now();
    assert_eq!(
        client
            .rollback(start_ts, b"holly", keys.clone())
            .await
            .expect("rollback"),
        None
    );
    writer
        .await
        .expect("writer task")
        .expect("the writer goes on");
    assert!(
        released_at.elapsed() < Duration::from_millis(crate::config::LOCK_TTL_MS),
        "released by the rollback, not by the TTL"
    );
    let again = client
        .lock_keys(start_ts, b"holly", keys)
        .await
        .expect_err("a rolled-back transaction cannot lock again");
    assert!(
        matches!(again, RaftstoreError::TxnAborted { .. }),
        "{again}"
    );
}

/// A client that locked and died (no heartbeats): a writer waits about one
/// TTL, rolls it back and goes on.
async fn a_dead_lockers_locks_expire_after_one_ttl(client: &RegionClient) {
    let start_ts = client.timestamp().await.expect("ts");
    client
        .lock_keys(start_ts, b"juniper", vec![b"juniper".to_vec()])
        .await
        .expect("locks taken");
    let started = Instant::now();
    client
        .write(vec![put("juniper", "writer", MutationCondition::None)])
        .await
        .expect("the writer goes on after the TTL");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(crate::config::LOCK_TTL_MS / 2),
        "waited for the TTL ({waited:?})"
    );
    let primary = client
        .rollback(start_ts, b"juniper", Vec::new())
        .await
        .expect("rollback answered");
    assert_eq!(primary, None, "it was rolled back, never committed");
}

async fn transactions(dir: &Path) {
    let cluster = Cluster::start(dir).await;
    let region_one = cluster.bootstrapped_region().await;
    let (_, right) = cluster
        .split(&region_one, SPLIT_KEY, FIRST_SPLIT_REGION_ID)
        .await;
    cluster.wait_hosted_everywhere(&right).await;
    let client = cluster.client();
    cross_region_commit_is_atomic_in_time(&client).await;
    the_second_committer_of_a_key_loses(&client).await;
    a_dead_clients_locks_are_rolled_back_after_their_ttl(&client).await;
    a_committed_primary_resolves_its_secondaries(&client).await;
    a_retried_one_phase_commit_is_idempotent(&client).await;
    select_for_update_holds_off_writers_until_the_holder_commits(&client).await;
    stale_locks_conflict_and_rollback_releases_them(&client).await;
    a_dead_lockers_locks_expire_after_one_ttl(&client).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_atomic_isolated_and_resolved_across_regions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let finished = tokio::time::timeout(
        Duration::from_secs(TEST_DEADLINE_SECS),
        transactions(dir.path()),
    )
    .await;
    assert!(
        finished.is_ok(),
        "transaction test exceeded {TEST_DEADLINE_SECS}s"
    );
}
