//! Group commit for raft log appends on RocksDB.
//!
//! Owns: one thread per database that syncs the write-ahead log for many
//! appends at once and then reports each of them. Knows nothing of raft
//! types, regions or root: callers hand it closures.
//!
//! openraft 0.9 hands the log store one `append` per client proposal and
//! waits for nothing but the `LogFlushed` callback. Syncing inside `append`
//! would hold the raft core for a whole fsync per proposal, so a leader
//! could never commit more proposals per second than its disk does fsyncs,
//! however many clients wait. Instead `append` writes the entries to
//! RocksDB unsynced (readable at once, so replication can read them) and
//! queues the callback here; one thread syncs the write-ahead log once for
//! everything queued meanwhile and then calls every callback in queue order.
//!
//! **Invariant:** a callback is called with `Ok` only after a WAL sync that
//! began after its entries were written, so openraft never counts an entry
//! as durable before it is.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use rocksdb::DB;
use tokio::sync::mpsc;

/// Callbacks waiting for a sync; `append` waits for room when it is full,
/// which slows the raft core down to what the disk can sync.
pub const WAL_SYNC_QUEUE_MAX: usize = 4096;

type Completion = Box<dyn FnOnce(Result<(), std::io::Error>) + Send>;

/// The sync thread of one RocksDB; dropping the last handle ends it.
pub struct WalSyncer {
    queue: mpsc::Sender<Completion>,
    thread: Option<JoinHandle<()>>,
}

impl WalSyncer {
    /// Starts the sync thread. It holds the database weakly: closing the
    /// database is never delayed by it.
    pub fn start(db: &Arc<DB>, name: &str) -> Result<Arc<Self>, std::io::Error> {
        let (queue, receiver) = mpsc::channel(WAL_SYNC_QUEUE_MAX);
        let db = Arc::downgrade(db);
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || sync_loop(db, receiver))?;
        Ok(Arc::new(Self {
            queue,
            thread: Some(thread),
        }))
    }

    /// Calls `done` once everything written to the database before this call
    /// is synced (or with the error that kept it from being synced).
    pub async fn after_sync(&self, done: impl FnOnce(Result<(), std::io::Error>) + Send + 'static) {
        if let Err(mpsc::error::SendError(done)) = self.queue.send(Box::new(done)).await {
            done(Err(std::io::Error::other(
                "the WAL sync thread has stopped",
            )));
        }
    }

    /// Returns once every callback queued before this call has been called.
    pub async fn drain(&self) -> Result<(), std::io::Error> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.after_sync(move |result| {
            let _ = sender.send(result);
        })
        .await;
        receiver
            .await
            .map_err(|_| std::io::Error::other("the WAL sync thread has stopped"))?
    }
}

impl Drop for WalSyncer {
    fn drop(&mut self) {
        // Closing the queue ends the thread after it called every callback
        // still queued; wait for that so no callback outlives the store.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.queue, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sync_loop(db: Weak<DB>, mut receiver: mpsc::Receiver<Completion>) {
    let mut batch: Vec<Completion> = Vec::new();
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < WAL_SYNC_QUEUE_MAX {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let synced = match db.upgrade() {
            Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
            None => Err("the database is closed".to_string()),
        };
        for done in batch.drain(..) {
            done(synced.clone().map_err(std::io::Error::other));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn open(dir: &std::path::Path) -> Arc<DB> {
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        Arc::new(DB::open(&options, dir).expect("open a scratch RocksDB"))
    }

    #[tokio::test]
    async fn callbacks_run_in_queue_order_after_a_sync() {
        let dir = tempfile::tempdir().expect("scratch dir");
        let db = open(dir.path());
        let syncer = WalSyncer::start(&db, "wal-sync-test").expect("start the sync thread");
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        for i in 0..100 {
            db.put(format!("k{i}"), b"v").expect("write");
            let order = order.clone();
            syncer
                .after_sync(move |result| {
                    assert!(result.is_ok(), "sync failed: {result:?}");
                    order.lock().expect("order lock").push(i);
                })
                .await;
        }
        syncer.drain().await.expect("drain");
        let order = order.lock().expect("order lock").clone();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn dropping_the_syncer_still_answers_every_queued_callback() {
        let dir = tempfile::tempdir().expect("scratch dir");
        let db = open(dir.path());
        let syncer = WalSyncer::start(&db, "wal-sync-test").expect("start the sync thread");
        let answered = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let answered = answered.clone();
            syncer
                .after_sync(move |_| {
                    answered.fetch_add(1, Ordering::SeqCst);
                })
                .await;
        }
        drop(syncer);
        assert_eq!(answered.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn a_closed_database_answers_an_error_instead_of_ok() {
        let dir = tempfile::tempdir().expect("scratch dir");
        let db = open(dir.path());
        let syncer = WalSyncer::start(&db, "wal-sync-test").expect("start the sync thread");
        drop(db);
        let result = syncer.drain().await;
        assert!(result.is_err(), "a sync without a database must not be Ok");
    }
}
