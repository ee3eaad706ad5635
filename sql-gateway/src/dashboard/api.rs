//! `/api/cluster`: the system tables as JSON. Pure: (view) -> JSON.
//!
//! Invariant: one source. Every panel of the dashboard is rendered from
//! [`SystemTable::columns`] and [`SystemTable::rows`] over one coordinator
//! `ClusterView`, exactly what `SELECT * FROM system.<table>` returns; this
//! module only changes the encoding (rows become JSON objects keyed by column
//! name) and cuts `root_events` to the newest [`DASHBOARD_EVENTS_MAX`].

use arbor_proto::ClusterViewResponse;
use serde_json::{json, Map, Value as Json};

use crate::system_tables::{timestamp, SystemTable};
use crate::value::Value;

/// Root events shown on the page (newest first); the table holds more.
pub(crate) const DASHBOARD_EVENTS_MAX: usize = 50;

/// Whether a table shows durable truth (facts applied from the root log,
/// identified by a cursor) or a view a coordinator rebuilds (heartbeats and
/// status answers, identified by when they were observed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    Truth,
    View,
}

impl Durability {
    pub(crate) fn of(table: SystemTable) -> Durability {
        match table {
            SystemTable::RootEvents | SystemTable::Leases | SystemTable::RootPeers => {
                Durability::Truth
            }
            SystemTable::Regions | SystemTable::Stores | SystemTable::Coordinators => {
                Durability::View
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Durability::Truth => "truth",
            Durability::View => "view",
        }
    }
}

/// The whole JSON document: freshness of the view, then every system table.
pub(crate) fn cluster_json(view: &ClusterViewResponse, dev_control: bool) -> Json {
    let mut tables = Map::new();
    for table in SystemTable::ALL {
        tables.insert(table.name().to_owned(), table_json(table, view));
    }
    let cursor = view.root.as_ref().map_or(0, |root| root.cursor);
    let answered_by = view
        .coordinator
        .as_ref()
        .map(|coordinator| coordinator.coordinator_id.clone());
    json!({
        "observed_at_ms": view.observed_at_ms,
        "observed_at": datum_json(&timestamp(view.observed_at_ms)),
        "cursor": cursor,
        "answered_by": answered_by,
        "dev_control": dev_control,
        "tables": tables,
    })
}

fn table_json(table: SystemTable, view: &ClusterViewResponse) -> Json {
    let columns = table.columns();
    let mut rows = table.rows(view);
    if table == SystemTable::RootEvents {
        rows.truncate(DASHBOARD_EVENTS_MAX);
    }
    let rows: Vec<Json> = rows
        .iter()
        .map(|row| {
            let object: Map<String, Json> = columns
                .iter()
                .zip(row)
                .map(|(column, value)| (column.name.clone(), datum_json(value)))
                .collect();
            Json::Object(object)
        })
        .collect();
    json!({
        "durability": Durability::of(table).label(),
        "columns": columns.iter().map(|column| column.name.as_str()).collect::<Vec<_>>(),
        "rows": rows,
    })
}

fn datum_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(flag) => Json::Bool(*flag),
        Value::Int(number) => Json::from(*number),
        Value::Float(number) => serde_json::Number::from_f64(*number)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        other => Json::String(other.to_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system_tables::tests::{sample_view, OBSERVED_AT_MS};

    #[test]
    fn every_system_table_appears_with_the_rows_sql_returns() {
        let view = sample_view();
        let document = cluster_json(&view, false);
        for table in SystemTable::ALL {
            let shown = &document["tables"][table.name()];
            let rows = table.rows(&view);
            assert_eq!(
                shown["rows"].as_array().map(Vec::len),
                Some(rows.len()),
                "{table:?}"
            );
            let columns = table.columns();
            for (row, shown_row) in rows
                .iter()
                .zip(shown["rows"].as_array().into_iter().flatten())
            {
                for (value, column) in row.iter().zip(&columns) {
                    assert_eq!(
                        shown_row[&column.name],
                        datum_json(value),
                        "{table:?}.{}",
                        column.name
                    );
                }
            }
        }
    }

    #[test]
    fn panels_say_whether_they_show_truth_or_a_view() {
        let document = cluster_json(&sample_view(), true);
        assert_eq!(document["tables"]["root_events"]["durability"], "truth");
        assert_eq!(document["tables"]["leases"]["durability"], "truth");
        assert_eq!(document["tables"]["regions"]["durability"], "view");
        assert_eq!(document["tables"]["stores"]["durability"], "view");
        assert_eq!(document["dev_control"], true);
        assert_eq!(document["cursor"], 42);
        assert_eq!(document["observed_at_ms"], OBSERVED_AT_MS);
        assert_eq!(document["observed_at"], "2024-05-01 12:34:56.789+00");
    }

    #[test]
    fn lease_row_carries_holder_generation_and_expiry() {
        let document = cluster_json(&sample_view(), false);
        let lease = &document["tables"]["leases"]["rows"][0];
        assert_eq!(lease["holder"], "coord-1");
        assert_eq!(lease["generation"], 3);
        assert_eq!(lease["expires_at"], "2024-05-01 12:35:05.789+00");
        assert_eq!(lease["sealed"], false);
    }

    #[test]
    fn root_events_are_cut_to_the_newest_few() {
        let mut view = sample_view();
        let event = view.events[0].clone();
        view.events = (0..DASHBOARD_EVENTS_MAX as u64 + 10)
            .rev()
            .map(|cursor| arbor_proto::RootEventRecord {
                cursor,
                ..event.clone()
            })
            .collect();
        let document = cluster_json(&view, false);
        let rows = document["tables"]["root_events"]["rows"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(rows.len(), DASHBOARD_EVENTS_MAX);
        assert_eq!(rows[0]["cursor"], DASHBOARD_EVENTS_MAX as u64 + 9);
    }
}
