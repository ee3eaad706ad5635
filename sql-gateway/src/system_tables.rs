//! The `system.*` tables: read-only relations rendered from one coordinator
//! `ClusterView`. Pure: (view) -> rows, so each table is tested from a
//! hand-made view.
//!
//! Invariant: every row says how fresh it is (`observed_at` or `cursor`),
//! keys are shown as escaped text ('' = unbounded), and times as
//! timestamptz-formatted text in UTC (NULL = never).

use arbor_proto::ClusterViewResponse;

use crate::value::{Column, Row, SqlType, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SystemTable {
    Regions,
    Leases,
    RootEvents,
    Stores,
    RootPeers,
    Coordinators,
}

pub(crate) const SYSTEM_SCHEMA: &str = "system";

impl SystemTable {
    pub(crate) const ALL: [SystemTable; 6] = [
        SystemTable::Regions,
        SystemTable::Leases,
        SystemTable::RootEvents,
        SystemTable::Stores,
        SystemTable::RootPeers,
        SystemTable::Coordinators,
    ];

    pub(crate) fn from_name(name: &str) -> Option<SystemTable> {
        SystemTable::ALL
            .into_iter()
            .find(|table| table.name() == name)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            SystemTable::Regions => "regions",
            SystemTable::Leases => "leases",
            SystemTable::RootEvents => "root_events",
            SystemTable::Stores => "stores",
            SystemTable::RootPeers => "root_peers",
            SystemTable::Coordinators => "coordinators",
        }
    }

    pub(crate) fn columns(self) -> Vec<Column> {
        use SqlType::{Bool, Float8, Int8, Text};
        let columns: &[(&str, SqlType)] = match self {
            SystemTable::Regions => &[
                ("region_id", Int8),
                ("start_key", Text),
                ("end_key", Text),
                ("epoch_version", Int8),
                ("epoch_conf_ver", Int8),
                ("leader_store_id", Int8),
                ("peers", Text),
                ("term", Int8),
                ("applied_index", Int8),
                ("key_count", Int8),
                ("size_bytes", Int8),
                ("read_keys_per_sec", Float8),
                ("read_bytes_per_sec", Float8),
                ("written_keys_per_sec", Float8),
                ("written_bytes_per_sec", Float8),
                ("observed_at", Text),
            ],
            SystemTable::Leases => &[
                ("holder", Text),
                ("holder_address", Text),
                ("generation", Int8),
                ("granted_at", Text),
                ("expires_at", Text),
                ("sealed", Bool),
                ("cursor", Int8),
            ],
            SystemTable::RootEvents => &[
                ("cursor", Int8),
                ("kind", Text),
                ("time", Text),
                ("detail", Text),
            ],
            SystemTable::Stores => &[
                ("store_id", Int8),
                ("address", Text),
                ("alive", Bool),
                ("last_heartbeat", Text),
                ("region_count", Int8),
                ("leader_count", Int8),
                ("capacity_bytes", Int8),
                ("available_bytes", Int8),
                ("used_bytes", Int8),
            ],
            SystemTable::RootPeers => &[
                ("peer_id", Int8),
                ("address", Text),
                ("role", Text),
                ("term", Int8),
                ("leader_id", Int8),
                ("applied_cursor", Int8),
            ],
            SystemTable::Coordinators => &[
                ("coordinator_id", Text),
                ("address", Text),
                ("role", Text),
                ("generation", Int8),
                ("cursor", Int8),
            ],
        };
        columns
            .iter()
            .map(|(name, sql_type)| Column::new(name, *sql_type))
            .collect()
    }

    pub(crate) fn rows(self, view: &ClusterViewResponse) -> Vec<Row> {
        match self {
            SystemTable::Regions => region_rows(view),
            SystemTable::Leases => lease_rows(view),
            SystemTable::RootEvents => root_event_rows(view),
            SystemTable::Stores => store_rows(view),
            SystemTable::RootPeers => root_peer_rows(view),
            SystemTable::Coordinators => coordinator_rows(view),
        }
    }
}

fn int(value: u64) -> Value {
    Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

/// An id where 0 means "unknown" in the proto.
fn optional_id(value: u64) -> Value {
    if value == 0 {
        Value::Null
    } else {
        int(value)
    }
}

/// A disk figure where 0 means the store could not measure it.
fn known_bytes(value: u64) -> Value {
    if value == 0 {
        Value::Null
    } else {
        int(value)
    }
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn region_rows(view: &ClusterViewResponse) -> Vec<Row> {
    view.regions
        .iter()
        .filter_map(|status| {
            let region = status.region.as_ref()?;
            let epoch = region.epoch.unwrap_or_default();
            let peers = region
                .peers
                .iter()
                .map(|peer| format!("{}@store{}", peer.peer_id, peer.store_id))
                .collect::<Vec<_>>()
                .join(",");
            Some(vec![
                int(region.region_id),
                Value::Text(display_key(&region.start_key)),
                Value::Text(display_key(&region.end_key)),
                int(epoch.version),
                int(epoch.conf_ver),
                optional_id(status.leader_store_id),
                Value::Text(peers),
                int(status.term),
                int(status.applied_index),
                int(status.key_count),
                int(status.approximate_size_bytes),
                Value::Float(status.read_keys_per_sec),
                Value::Float(status.read_bytes_per_sec),
                Value::Float(status.written_keys_per_sec),
                Value::Float(status.written_bytes_per_sec),
                timestamp(status.observed_at_ms),
            ])
        })
        .collect()
}

fn lease_rows(view: &ClusterViewResponse) -> Vec<Row> {
    let Some(root) = view.root.as_ref() else {
        return Vec::new();
    };
    let Some(lease) = root.lease.as_ref() else {
        return Vec::new();
    };
    if lease.holder_id.is_empty() && lease.generation == 0 {
        return Vec::new();
    }
    vec![vec![
        text(&lease.holder_id),
        text(&lease.holder_address),
        int(lease.generation),
        timestamp(lease.granted_at_ms),
        timestamp(lease.expires_at_ms),
        Value::Bool(lease.sealed),
        int(root.cursor),
    ]]
}

fn root_event_rows(view: &ClusterViewResponse) -> Vec<Row> {
    view.events
        .iter()
        .map(|event| {
            vec![
                int(event.cursor),
                text(&event.kind),
                timestamp(event.stamp_ms),
                text(&event.detail),
            ]
        })
        .collect()
}

fn store_rows(view: &ClusterViewResponse) -> Vec<Row> {
    view.stores
        .iter()
        .filter_map(|status| {
            let store = status.store.as_ref()?;
            let stats = status.stats;
            Some(vec![
                int(store.store_id),
                text(&store.address),
                Value::Bool(status.alive),
                timestamp(status.last_heartbeat_ms),
                int(u64::from(status.region_count)),
                int(u64::from(status.leader_count)),
                // NULL until the store reported its disk (0 = it could not
                // ask the file system).
                stats.map_or(Value::Null, |s| known_bytes(s.capacity_bytes)),
                stats.map_or(Value::Null, |s| known_bytes(s.available_bytes)),
                stats.map_or(Value::Null, |s| int(s.used_bytes)),
            ])
        })
        .collect()
}

fn root_peer_rows(view: &ClusterViewResponse) -> Vec<Row> {
    view.root_peers
        .iter()
        .map(|peer| {
            vec![
                int(peer.peer_id),
                text(&peer.address),
                text(&peer.role),
                int(peer.term),
                optional_id(peer.leader_id),
                int(peer.applied_cursor),
            ]
        })
        .collect()
}

/// Every coordinator the gateway asked; a hand-made view without that list
/// shows the answering coordinator alone.
fn coordinator_rows(view: &ClusterViewResponse) -> Vec<Row> {
    let listed: Vec<&arbor_proto::CoordinatorStatus> = if view.coordinators.is_empty() {
        view.coordinator.iter().collect()
    } else {
        view.coordinators.iter().collect()
    };
    listed
        .into_iter()
        .map(|coordinator| {
            vec![
                text(&coordinator.coordinator_id),
                text(&coordinator.address),
                text(&coordinator.role),
                int(coordinator.generation),
                int(coordinator.cursor),
            ]
        })
        .collect()
}

/// A key as readable text: printable ASCII as is, backslash doubled, every
/// other byte as `\xNN`. The empty key is '' (unbounded).
pub(crate) fn display_key(key: &[u8]) -> String {
    let mut shown = String::with_capacity(key.len());
    for &byte in key {
        match byte {
            b'\\' => shown.push_str("\\\\"),
            0x20..=0x7E => shown.push(char::from(byte)),
            _ => shown.push_str(&format!("\\x{byte:02x}")),
        }
    }
    shown
}

/// Milliseconds since the Unix epoch as Postgres prints a UTC timestamptz
/// (`2024-05-01 12:34:56.789+00`); 0 means "never" and becomes NULL.
pub(crate) fn timestamp(unix_ms: u64) -> Value {
    if unix_ms == 0 {
        return Value::Null;
    }
    let seconds = unix_ms / 1_000;
    let millis = unix_ms % 1_000;
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX / 2);
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    Value::Text(format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03}+00",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60,
    ))
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arbor_proto::{
        CoordinatorLease, CoordinatorStatus, RegionDescriptor, RegionEpoch, RegionPeer,
        RegionStatus, RootEventRecord, RootState, RootStatusResponse, StoreDescriptor, StoreStats,
        StoreStatus,
    };

    /// 2024-05-01 12:34:56.789 UTC.
    pub(crate) const OBSERVED_AT_MS: u64 = 1_714_566_896_789;

    pub(crate) fn sample_view() -> ClusterViewResponse {
        ClusterViewResponse {
            coordinator: Some(CoordinatorStatus {
                coordinator_id: "coord-1".into(),
                address: "127.0.0.1:7001".into(),
                role: "holder".into(),
                generation: 3,
                cursor: 42,
            }),
            root: Some(RootState {
                cluster_id: "c".into(),
                stores: vec![],
                regions: vec![],
                lease: Some(CoordinatorLease {
                    holder_id: "coord-1".into(),
                    holder_address: "127.0.0.1:7001".into(),
                    generation: 3,
                    granted_at_ms: OBSERVED_AT_MS - 1_000,
                    expires_at_ms: OBSERVED_AT_MS + 9_000,
                    sealed: false,
                }),
                cursor: 42,
                last_stamp_ms: OBSERVED_AT_MS,
                ..RootState::default()
            }),
            regions: vec![
                RegionStatus {
                    region: Some(RegionDescriptor {
                        region_id: 1,
                        start_key: vec![],
                        end_key: b"t\x00\x00\x00\x01m\x00\x01".to_vec(),
                        epoch: Some(RegionEpoch {
                            version: 2,
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
                    }),
                    leader_store_id: 1,
                    term: 5,
                    applied_index: 10,
                    key_count: 7,
                    observed_at_ms: OBSERVED_AT_MS,
                    approximate_size_bytes: 4_096,
                    read_keys_per_sec: 12.5,
                    read_bytes_per_sec: 250.0,
                    written_keys_per_sec: 2.0,
                    written_bytes_per_sec: 64.0,
                },
                RegionStatus {
                    region: Some(RegionDescriptor {
                        region_id: 2,
                        start_key: b"t\x00\x00\x00\x01m\x00\x01".to_vec(),
                        end_key: vec![],
                        epoch: Some(RegionEpoch {
                            version: 2,
                            conf_ver: 1,
                        }),
                        peers: vec![RegionPeer {
                            peer_id: 3,
                            store_id: 2,
                        }],
                    }),
                    leader_store_id: 0,
                    term: 1,
                    applied_index: 3,
                    key_count: 0,
                    observed_at_ms: OBSERVED_AT_MS,
                    ..RegionStatus::default()
                },
            ],
            stores: vec![
                StoreStatus {
                    store: Some(StoreDescriptor {
                        store_id: 1,
                        address: "127.0.0.1:9001".into(),
                    }),
                    last_heartbeat_ms: OBSERVED_AT_MS,
                    alive: true,
                    region_count: 1,
                    leader_count: 1,
                    stats: Some(StoreStats {
                        capacity_bytes: 1 << 30,
                        available_bytes: 1 << 29,
                        used_bytes: 4_096,
                    }),
                },
                StoreStatus {
                    store: Some(StoreDescriptor {
                        store_id: 2,
                        address: "127.0.0.1:9002".into(),
                    }),
                    last_heartbeat_ms: 0,
                    alive: false,
                    region_count: 2,
                    leader_count: 0,
                    stats: None,
                },
            ],
            root_peers: vec![RootStatusResponse {
                peer_id: 1,
                address: "127.0.0.1:6001".into(),
                role: "leader".into(),
                term: 2,
                leader_id: 1,
                applied_cursor: 42,
                last_log_index: 42,
                members: vec![],
            }],
            events: vec![
                RootEventRecord {
                    cursor: 42,
                    stamp_ms: OBSERVED_AT_MS,
                    kind: "lease_renewed".into(),
                    detail: "coord-1 gen 3".into(),
                },
                RootEventRecord {
                    cursor: 41,
                    stamp_ms: OBSERVED_AT_MS - 10,
                    kind: "lease_granted".into(),
                    detail: "coord-1 gen 3".into(),
                },
            ],
            observed_at_ms: OBSERVED_AT_MS,
            coordinators: Vec::new(),
        }
    }

    #[test]
    fn every_table_renders_rows_matching_its_columns() {
        let view = sample_view();
        for table in SystemTable::ALL {
            let columns = table.columns();
            let rows = table.rows(&view);
            assert!(!rows.is_empty(), "{table:?} rendered no rows");
            for row in rows {
                assert_eq!(row.len(), columns.len(), "{table:?}");
                for (value, column) in row.iter().zip(&columns) {
                    let fits = match (value, column.sql_type) {
                        (Value::Null, _) => true,
                        (Value::Text(_), SqlType::Text) => true,
                        (Value::Int(_), SqlType::Int8) => true,
                        (Value::Bool(_), SqlType::Bool) => true,
                        (Value::Float(_), SqlType::Float8) => true,
                        _ => false,
                    };
                    assert!(fits, "{table:?}.{} holds {value:?}", column.name);
                }
            }
        }
    }

    #[test]
    fn regions_show_readable_keys_epochs_and_peers() {
        let rows = SystemTable::Regions.rows(&sample_view());
        assert_eq!(rows[0][0], Value::Int(1));
        assert_eq!(rows[0][1], Value::Text(String::new()));
        assert_eq!(
            rows[0][2],
            Value::Text("t\\x00\\x00\\x00\\x01m\\x00\\x01".into())
        );
        assert_eq!(rows[0][3], Value::Int(2));
        assert_eq!(rows[0][6], Value::Text("1@store1,2@store2".into()));
        assert_eq!(
            rows[0][15],
            Value::Text("2024-05-01 12:34:56.789+00".into())
        );
        assert_eq!(rows[1][5], Value::Null, "unknown leader is NULL");
    }

    #[test]
    fn regions_show_size_and_traffic_rates_of_the_leader() {
        let rows = SystemTable::Regions.rows(&sample_view());
        let columns = SystemTable::Regions.columns();
        let at = |name: &str| {
            columns
                .iter()
                .position(|column| column.name == name)
                .expect("column exists")
        };
        assert_eq!(rows[0][at("size_bytes")], Value::Int(4_096));
        assert_eq!(rows[0][at("read_keys_per_sec")], Value::Float(12.5));
        assert_eq!(rows[0][at("read_bytes_per_sec")], Value::Float(250.0));
        assert_eq!(rows[0][at("written_keys_per_sec")], Value::Float(2.0));
        assert_eq!(rows[0][at("written_bytes_per_sec")], Value::Float(64.0));
        assert_eq!(rows[1][at("read_keys_per_sec")], Value::Float(0.0));
    }

    #[test]
    fn stores_show_disk_figures_or_null_before_the_first_report() {
        let rows = SystemTable::Stores.rows(&sample_view());
        assert_eq!(rows[0][6], Value::Int(1 << 30), "capacity_bytes");
        assert_eq!(rows[0][7], Value::Int(1 << 29), "available_bytes");
        assert_eq!(rows[0][8], Value::Int(4_096), "used_bytes");
        assert_eq!(rows[1][6..9], [Value::Null, Value::Null, Value::Null]);
    }

    #[test]
    fn timestamps_render_like_postgres_utc() {
        assert_eq!(timestamp(0), Value::Null);
        assert_eq!(
            timestamp(1),
            Value::Text("1970-01-01 00:00:00.001+00".into())
        );
        assert_eq!(
            timestamp(951_782_400_000),
            Value::Text("2000-02-29 00:00:00.000+00".into())
        );
        assert_eq!(display_key(b"a\\b\xff"), "a\\\\b\\xff");
    }
}
