//! The region-client benchmark: point reads, single-key writes and batch
//! writes through `arbor_raftstore::RegionClient`, the client the gateway
//! itself uses, with no SQL in the way. Put next to the SQL point select
//! and upsert of the same run, it says how much of the SQL path's cost is
//! the region path's.
//!
//! All clients share one `RegionClient` (route cache, connections and the
//! batching TSO client), as every session of a gateway does. Keys live
//! under [`KEY_PREFIX`], which sorts before every table key, so they never
//! mix with SQL rows. Each client writes only its own keys, so writes never
//! conflict with each other; reads pick among the preloaded keys with a
//! fixed pseudo-random sequence per client ([`pick`]), so runs repeat.

use std::time::Duration;

use arbor_proto::{Mutation, MutationCondition, MutationOp};
use arbor_raftstore::{RegionClient, WriteOutcome};
use futures::FutureExt;

use crate::error::{BenchError, Result};
use crate::load::Request;
use crate::plan::{RegionOp, REGION_BATCH_KEYS, REGION_PRELOAD_KEYS};
use crate::REQUEST_TIMEOUT_MS;

/// First bytes of every key this benchmark writes (table keys start with
/// `t`, so these sort before every SQL row).
pub const KEY_PREFIX: &str = "bench/region/";
/// Bytes of every value written (about a pgbench account row).
pub const VALUE_BYTES: usize = 100;
/// Keys each client cycles its single-key writes over.
pub const SINGLE_WRITE_KEYS_PER_CLIENT: u64 = 100;
/// Batches each client cycles its batch writes over.
pub const BATCHES_PER_CLIENT: u64 = 4;

/// The `index`-th key the point reads read.
pub fn read_key(index: u64) -> Vec<u8> {
    format!("{KEY_PREFIX}r/{index:08}").into_bytes()
}

/// The key of `client`'s `n`-th single-key write.
pub fn single_write_key(client: usize, n: u64) -> Vec<u8> {
    format!(
        "{KEY_PREFIX}w/{client:04}/{:04}",
        n % SINGLE_WRITE_KEYS_PER_CLIENT
    )
    .into_bytes()
}

/// The keys of `client`'s `n`-th batch write: [`REGION_BATCH_KEYS`]
/// adjacent keys, so one region holds them all while regions are large.
pub fn batch_keys(client: usize, n: u64) -> Vec<Vec<u8>> {
    let batch = n % BATCHES_PER_CLIENT;
    (0..REGION_BATCH_KEYS)
        .map(|i| format!("{KEY_PREFIX}b/{client:04}/{batch:02}/{i:04}").into_bytes())
        .collect()
}

/// The `n`-th key index client `seed` reads, below `keys` (splitmix64: a
/// fixed, evenly spread sequence without a random number generator).
pub fn pick(seed: u64, n: u64, keys: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(n.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z % keys.max(1)
}

fn put(key: Vec<u8>) -> Mutation {
    Mutation {
        op: MutationOp::Put as i32,
        key,
        value: vec![b'v'; VALUE_BYTES],
        condition: MutationCondition::None as i32,
    }
}

pub async fn write(client: &RegionClient, keys: Vec<Vec<u8>>) -> std::result::Result<u64, String> {
    let count = keys.len() as u64;
    let call = client.write(keys.into_iter().map(put).collect());
    match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), call).await {
        Ok(Ok(WriteOutcome::Applied { .. })) => Ok(count),
        Ok(Ok(WriteOutcome::ConditionFailed { mutation_index })) => Err(format!(
            "condition failed at mutation {mutation_index} (none was set)"
        )),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT_MS} ms")),
    }
}

async fn read(client: &RegionClient, key: Vec<u8>) -> std::result::Result<u64, String> {
    match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), client.get(&key)).await {
        Ok(Ok(Some(_))) => Ok(1),
        Ok(Ok(None)) => Err(format!(
            "preloaded key {} not found",
            String::from_utf8_lossy(&key)
        )),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT_MS} ms")),
    }
}

/// Writes the [`REGION_PRELOAD_KEYS`] keys the point reads read, in
/// batches of [`REGION_BATCH_KEYS`].
pub async fn preload(client: &RegionClient) -> Result<()> {
    let keys: Vec<Vec<u8>> = (0..REGION_PRELOAD_KEYS as u64).map(read_key).collect();
    for batch in keys.chunks(REGION_BATCH_KEYS) {
        write(client, batch.to_vec())
            .await
            .map_err(|e| BenchError::cluster("region client preload", e))?;
    }
    Ok(())
}

/// One closed-loop request per client, each answering the keys it read or
/// wrote.
pub fn requests(op: RegionOp, clients: usize, client: &RegionClient) -> Vec<Request> {
    (0..clients)
        .map(|index| {
            let client = client.clone();
            let mut n: u64 = 0;
            let request: Request = Box::new(move || {
                let client = client.clone();
                n += 1;
                let seed = index as u64;
                let sequence = n;
                async move {
                    match op {
                        RegionOp::PointRead => {
                            let key = read_key(pick(seed, sequence, REGION_PRELOAD_KEYS as u64));
                            read(&client, key).await
                        }
                        RegionOp::SingleWrite => {
                            write(&client, vec![single_write_key(index, sequence)]).await
                        }
                        RegionOp::BatchWrite => write(&client, batch_keys(index, sequence)).await,
                    }
                }
                .boxed()
            });
            request
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_keys_sort_before_every_table_key() {
        for key in [
            read_key(0),
            read_key(REGION_PRELOAD_KEYS as u64 - 1),
            single_write_key(63, 7),
            batch_keys(63, 3)[REGION_BATCH_KEYS - 1].clone(),
        ] {
            assert!(key.as_slice() < b"t".as_slice(), "{key:?}");
        }
    }

    #[test]
    fn clients_never_write_each_others_keys() {
        let mut seen = std::collections::HashSet::new();
        for client in 0..64 {
            for n in 0..SINGLE_WRITE_KEYS_PER_CLIENT {
                assert!(seen.insert(single_write_key(client, n)));
            }
            for n in 0..BATCHES_PER_CLIENT {
                for key in batch_keys(client, n) {
                    assert!(seen.insert(key));
                }
            }
        }
        assert_eq!(
            single_write_key(5, 3),
            single_write_key(5, 3 + SINGLE_WRITE_KEYS_PER_CLIENT)
        );
    }

    #[test]
    fn a_batch_holds_adjacent_distinct_keys() {
        let keys = batch_keys(2, 9);
        assert_eq!(keys.len(), REGION_BATCH_KEYS);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn reads_pick_every_preloaded_key_range_and_nothing_outside() {
        let keys = REGION_PRELOAD_KEYS as u64;
        let mut hits = [0u64; 10];
        for n in 0..100_000 {
            let index = pick(7, n, keys);
            assert!(index < keys);
            hits[(index * 10 / keys) as usize] += 1;
        }
        // Evenly spread: every tenth of the keys gets 10% +- 1%.
        assert!(
            hits.iter().all(|h| (9_000..=11_000).contains(h)),
            "{hits:?}"
        );
        assert_ne!(pick(1, 5, keys), pick(2, 5, keys));
    }
}
