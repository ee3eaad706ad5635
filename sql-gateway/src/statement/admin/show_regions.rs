//! `SHOW REGIONS FROM TABLE t` (alias `SHOW RANGES FROM TABLE t`): the
//! regions overlapping the table's key range, in key order, from the same
//! coordinator `ClusterView` that `system.regions` renders.
//!
//! Columns: `region_id`, `start_key`, `end_key` (the bound as primary-key
//! values, `/50`; NULL where the region starts before or ends after the
//! table — see `key_text`), `leader_store_id` (NULL while no leader is
//! known), `replicas` (store ids, `{1,2,3}`), `epoch_version`,
//! `epoch_conf_ver`.
//!
//! The view is the answering coordinator's: root's region map as that
//! coordinator has applied it, so a split committed a moment ago may show
//! a moment later on a standby.

use arbor_catalog::{table_key_range, TableDescriptor};
use arbor_proto::{ClusterViewResponse, RegionDescriptor};

use crate::statement::QueryResult;
use crate::value::{Column, Row, SqlType, Value};

use super::key_text::key_text;
use super::{column, int};

pub(crate) fn columns() -> Vec<Column> {
    vec![
        column("region_id", SqlType::Int8),
        column("start_key", SqlType::Text),
        column("end_key", SqlType::Text),
        column("leader_store_id", SqlType::Int8),
        column("replicas", SqlType::Text),
        column("epoch_version", SqlType::Int8),
        column("epoch_conf_ver", SqlType::Int8),
    ]
}

/// The table's regions as result rows. Pure: (table, view) -> rows.
pub(crate) fn show_regions(table: &TableDescriptor, view: &ClusterViewResponse) -> QueryResult {
    let (table_start, table_end) = table_key_range(table.id);
    let mut regions: Vec<(&RegionDescriptor, u64)> = view
        .regions
        .iter()
        .filter_map(|status| Some((status.region.as_ref()?, status.leader_store_id)))
        .filter(|(region, _)| overlaps(region, &table_start, &table_end))
        .collect();
    regions.sort_by(|(a, _), (b, _)| a.start_key.cmp(&b.start_key));
    let rows = regions
        .into_iter()
        .map(|(region, leader_store_id)| region_row(table, region, leader_store_id))
        .collect();
    QueryResult::Rows {
        columns: columns(),
        rows,
    }
}

/// `[start_key, end_key)` meets `[table_start, table_end)`; an empty end
/// key is the end of the key space.
fn overlaps(region: &RegionDescriptor, table_start: &[u8], table_end: &[u8]) -> bool {
    region.start_key.as_slice() < table_end
        && (region.end_key.is_empty() || region.end_key.as_slice() > table_start)
}

fn region_row(table: &TableDescriptor, region: &RegionDescriptor, leader_store_id: u64) -> Row {
    let epoch = region.epoch.unwrap_or_default();
    let mut stores: Vec<u64> = region.peers.iter().map(|peer| peer.store_id).collect();
    stores.sort_unstable();
    let replicas = stores
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let bound = |key: &[u8]| key_text(table, key).map_or(Value::Null, Value::Text);
    vec![
        int(region.region_id),
        bound(&region.start_key),
        bound(&region.end_key),
        // 0 is "no leader known" in the view.
        if leader_store_id == 0 {
            Value::Null
        } else {
            int(leader_store_id)
        },
        Value::Text(format!("{{{replicas}}}")),
        int(epoch.version),
        int(epoch.conf_ver),
    ]
}
