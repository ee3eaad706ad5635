//! Per-region traffic counters: what a replica served while it led. They
//! only grow (from zero when the store starts); the heartbeat carries them
//! as they are and the coordinator turns two reports into rates, so a lost
//! heartbeat loses no traffic and no clock is read here.

use std::sync::atomic::{AtomicU64, Ordering};

use arbor_proto::RegionTraffic;

#[derive(Debug, Default)]
pub struct TrafficCounters {
    read_keys: AtomicU64,
    read_bytes: AtomicU64,
    written_keys: AtomicU64,
    written_bytes: AtomicU64,
}

impl TrafficCounters {
    /// A read returned `keys` keys holding `bytes` bytes of keys and values.
    pub fn record_read(&self, keys: u64, bytes: u64) {
        self.read_keys.fetch_add(keys, Ordering::Relaxed);
        self.read_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A write was accepted for `keys` keys of `bytes` bytes.
    pub fn record_write(&self, keys: u64, bytes: u64) {
        self.written_keys.fetch_add(keys, Ordering::Relaxed);
        self.written_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RegionTraffic {
        RegionTraffic {
            read_keys: self.read_keys.load(Ordering::Relaxed),
            read_bytes: self.read_bytes.load(Ordering::Relaxed),
            written_keys: self.written_keys.load(Ordering::Relaxed),
            written_bytes: self.written_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_accumulate_reads_and_writes_separately() {
        let counters = TrafficCounters::default();
        counters.record_read(1, 10);
        counters.record_read(3, 30);
        counters.record_write(2, 7);
        assert_eq!(
            counters.snapshot(),
            RegionTraffic {
                read_keys: 4,
                read_bytes: 40,
                written_keys: 2,
                written_bytes: 7,
            }
        );
    }
}
