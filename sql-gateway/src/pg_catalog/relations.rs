//! The virtual `pg_catalog` and `information_schema` relations, rendered
//! from one catalog snapshot. Pure: (catalog) -> rows, so every relation is
//! tested without a cluster.
//!
//! Invariant: OIDs are stable functions of what they name: built-in types
//! keep Postgres' OIDs, namespaces and catalog relations keep Postgres' OIDs,
//! and a user table's OID is derived from its never-reused table id, so a
//! driver that caches an OID never sees it change meaning.

use arbor_catalog::{Catalog, ColumnDefault, ColumnType, TableDescriptor};

use crate::settings::KNOWN_SETTINGS;
use crate::system_tables::{SystemTable, SYSTEM_SCHEMA};
use crate::value::{Column, Row, SqlType, Value};

/// Postgres' first OID for user objects; user tables are numbered from here.
const FIRST_USER_OID: i64 = 16_384;
pub(crate) const PG_CATALOG_NAMESPACE_OID: i64 = 11;
pub(crate) const PUBLIC_NAMESPACE_OID: i64 = 2_200;
const INFORMATION_SCHEMA_NAMESPACE_OID: i64 = 13_000;
const SYSTEM_NAMESPACE_OID: i64 = 16_000;
/// Views over system tables get OIDs from here (below user tables).
const SYSTEM_TABLE_OID_BASE: i64 = 16_100;
/// The only role: trust authentication maps every user to it.
pub(crate) const OWNER_OID: i64 = 10;
pub(crate) const OWNER_NAME: &str = "arbor";
pub(crate) const DATABASE_NAME: &str = "arbor";
const DATABASE_OID: i64 = 5;
/// `pg_encoding_to_char(6)` is UTF8.
pub(crate) const UTF8_ENCODING: i64 = 6;
const BTREE_AM_OID: i64 = 403;
const HEAP_AM_OID: i64 = 2;

/// A relation's OID: two per table id (the table, then its primary-key
/// index), so both stay stable for the table's life.
pub(crate) fn table_oid(table: &TableDescriptor) -> i64 {
    FIRST_USER_OID + 2 * i64::from(table.id.0)
}

fn index_oid(table: &TableDescriptor) -> i64 {
    table_oid(table) + 1
}

/// A materialized virtual relation.
#[derive(Debug, Clone)]
pub(crate) struct VirtualTable {
    pub(crate) columns: Vec<Column>,
    pub(crate) rows: Vec<Row>,
}

/// Every catalog relation served: (schema, name, OID).
const CATALOG_RELATIONS: [(&str, &str, i64); 32] = [
    ("pg_catalog", "pg_class", 1_259),
    ("pg_catalog", "pg_namespace", 2_615),
    ("pg_catalog", "pg_attribute", 1_249),
    ("pg_catalog", "pg_type", 1_247),
    ("pg_catalog", "pg_index", 2_610),
    ("pg_catalog", "pg_database", 1_262),
    ("pg_catalog", "pg_settings", 12_000),
    ("pg_catalog", "pg_description", 2_609),
    ("pg_catalog", "pg_am", 2_601),
    ("pg_catalog", "pg_constraint", 2_606),
    ("pg_catalog", "pg_attrdef", 2_604),
    ("pg_catalog", "pg_collation", 3_456),
    ("pg_catalog", "pg_roles", 12_001),
    ("pg_catalog", "pg_user", 12_002),
    ("pg_catalog", "pg_proc", 1_255),
    ("pg_catalog", "pg_inherits", 2_611),
    ("pg_catalog", "pg_policy", 3_256),
    ("pg_catalog", "pg_statistic_ext", 3_381),
    ("pg_catalog", "pg_publication", 6_104),
    ("pg_catalog", "pg_publication_namespace", 6_237),
    ("pg_catalog", "pg_publication_rel", 6_106),
    ("pg_catalog", "pg_trigger", 2_620),
    ("pg_catalog", "pg_extension", 3_079),
    ("pg_catalog", "pg_enum", 3_501),
    ("pg_catalog", "pg_range", 3_541),
    ("pg_catalog", "pg_sequence", 2_224),
    ("pg_catalog", "pg_tablespace", 1_213),
    ("pg_catalog", "pg_matviews", 12_003),
    ("information_schema", "tables", 13_100),
    ("information_schema", "columns", 13_101),
    ("information_schema", "schemata", 13_102),
    ("pg_catalog", "pg_tables", 12_004),
];

/// The catalog relation `schema.name` (schema None: pg_catalog, as the
/// search path resolves it), if served.
pub(crate) fn lookup(schema: Option<&str>, name: &str) -> Option<(&'static str, &'static str)> {
    CATALOG_RELATIONS
        .iter()
        .find(|(relation_schema, relation, _)| {
            *relation == name
                && schema.map_or(*relation_schema == "pg_catalog", |s| s == *relation_schema)
        })
        .map(|(schema, name, _)| (*schema, *name))
}

/// Renders `schema.name` from `catalog`. `lookup` must have found it.
pub(crate) fn render(schema: &str, name: &str, catalog: &Catalog) -> VirtualTable {
    let tables: Vec<&TableDescriptor> = catalog.tables().collect();
    let (columns, rows): (Columns, Vec<Row>) = match (schema, name) {
        ("pg_catalog", "pg_class") => (PG_CLASS, pg_class_rows(&tables)),
        ("pg_catalog", "pg_namespace") => (PG_NAMESPACE, pg_namespace_rows()),
        ("pg_catalog", "pg_attribute") => (PG_ATTRIBUTE, pg_attribute_rows(&tables)),
        ("pg_catalog", "pg_type") => (PG_TYPE, pg_type_rows()),
        ("pg_catalog", "pg_index") => (PG_INDEX, pg_index_rows(&tables)),
        ("pg_catalog", "pg_database") => (PG_DATABASE, pg_database_rows()),
        ("pg_catalog", "pg_settings") => (PG_SETTINGS, pg_settings_rows()),
        ("pg_catalog", "pg_am") => (PG_AM, pg_am_rows()),
        ("pg_catalog", "pg_constraint") => (PG_CONSTRAINT, pg_constraint_rows(&tables)),
        ("pg_catalog", "pg_attrdef") => (PG_ATTRDEF, pg_attrdef_rows(&tables)),
        ("pg_catalog", "pg_roles" | "pg_user") => (PG_ROLES, pg_roles_rows()),
        ("pg_catalog", "pg_tables") => (PG_TABLES, pg_tables_rows(&tables)),
        ("information_schema", "tables") => (INFO_TABLES, info_tables_rows(&tables)),
        ("information_schema", "columns") => (INFO_COLUMNS, info_columns_rows(&tables)),
        ("information_schema", "schemata") => (INFO_SCHEMATA, info_schemata_rows()),
        ("pg_catalog", "pg_description") => (PG_DESCRIPTION, Vec::new()),
        ("pg_catalog", "pg_collation") => (PG_COLLATION, Vec::new()),
        ("pg_catalog", "pg_proc") => (PG_PROC, Vec::new()),
        ("pg_catalog", "pg_inherits") => (PG_INHERITS, Vec::new()),
        ("pg_catalog", "pg_policy") => (PG_POLICY, Vec::new()),
        ("pg_catalog", "pg_statistic_ext") => (PG_STATISTIC_EXT, Vec::new()),
        ("pg_catalog", "pg_publication") => (PG_PUBLICATION, Vec::new()),
        ("pg_catalog", "pg_publication_namespace") => (PG_PUBLICATION_NAMESPACE, Vec::new()),
        ("pg_catalog", "pg_publication_rel") => (PG_PUBLICATION_REL, Vec::new()),
        ("pg_catalog", "pg_trigger") => (PG_TRIGGER, Vec::new()),
        ("pg_catalog", "pg_extension") => (PG_EXTENSION, Vec::new()),
        ("pg_catalog", "pg_enum") => (PG_ENUM, Vec::new()),
        ("pg_catalog", "pg_range") => (PG_RANGE, Vec::new()),
        ("pg_catalog", "pg_sequence") => (PG_SEQUENCE, Vec::new()),
        ("pg_catalog", "pg_tablespace") => (PG_TABLESPACE, pg_tablespace_rows()),
        ("pg_catalog", "pg_matviews") => (PG_MATVIEWS, Vec::new()),
        _ => (&[][..] as Columns, Vec::new()),
    };
    VirtualTable {
        columns: columns
            .iter()
            .map(|(name, sql_type)| Column::new(name, *sql_type))
            .collect(),
        rows,
    }
}

use SqlType::{Bool, Int2, Int4, Int8, Text};

type Columns = &'static [(&'static str, SqlType)];

const PG_CLASS: Columns = &[
    ("oid", Int8),
    ("relname", Text),
    ("relnamespace", Int8),
    ("reltype", Int8),
    ("reloftype", Int8),
    ("relowner", Int8),
    ("relam", Int8),
    ("relfilenode", Int8),
    ("reltablespace", Int8),
    ("relpages", Int4),
    ("reltuples", SqlType::Float4),
    ("reltoastrelid", Int8),
    ("relhasindex", Bool),
    ("relisshared", Bool),
    ("relpersistence", Text),
    ("relkind", Text),
    ("relnatts", Int2),
    ("relchecks", Int2),
    ("relhasrules", Bool),
    ("relhastriggers", Bool),
    ("relhassubclass", Bool),
    ("relrowsecurity", Bool),
    ("relforcerowsecurity", Bool),
    ("relispopulated", Bool),
    ("relreplident", Text),
    ("relispartition", Bool),
    ("relacl", Text),
    ("reloptions", Text),
    ("relpartbound", Text),
];

fn int(value: i64) -> Value {
    Value::Int(value)
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

/// One pg_class row; `kind` is `r` (table), `i` (index) or `v` (view).
fn class_row(
    oid: i64,
    name: &str,
    namespace: i64,
    kind: &str,
    columns: usize,
    has_index: bool,
) -> Row {
    let access_method = match kind {
        "r" => HEAP_AM_OID,
        "i" => BTREE_AM_OID,
        _ => 0,
    };
    vec![
        int(oid),
        text(name),
        int(namespace),
        int(0),
        int(0),
        int(OWNER_OID),
        int(access_method),
        int(oid),
        int(0),
        Value::Int(0),
        Value::Float(-1.0),
        int(0),
        Value::Bool(has_index),
        Value::Bool(false),
        text("p"),
        text(kind),
        int(i64::try_from(columns).unwrap_or(i64::MAX)),
        int(0),
        Value::Bool(false),
        Value::Bool(false),
        Value::Bool(false),
        Value::Bool(false),
        Value::Bool(false),
        Value::Bool(true),
        text("d"),
        Value::Bool(false),
        Value::Null,
        Value::Null,
        Value::Null,
    ]
}

fn pg_class_rows(tables: &[&TableDescriptor]) -> Vec<Row> {
    let mut rows = Vec::new();
    for table in tables {
        rows.push(class_row(
            table_oid(table),
            &table.name,
            PUBLIC_NAMESPACE_OID,
            "r",
            table.columns.len(),
            true,
        ));
        rows.push(class_row(
            index_oid(table),
            &table.primary_key_constraint_name(),
            PUBLIC_NAMESPACE_OID,
            "i",
            table.primary_key.len(),
            false,
        ));
    }
    for (offset, table) in SystemTable::ALL.iter().enumerate() {
        let oid = SYSTEM_TABLE_OID_BASE + i64::try_from(offset).unwrap_or(0);
        rows.push(class_row(
            oid,
            table.name(),
            SYSTEM_NAMESPACE_OID,
            "v",
            table.columns().len(),
            false,
        ));
    }
    for (schema, name, oid) in CATALOG_RELATIONS {
        let namespace = if schema == "pg_catalog" {
            PG_CATALOG_NAMESPACE_OID
        } else {
            INFORMATION_SCHEMA_NAMESPACE_OID
        };
        rows.push(class_row(oid, name, namespace, "r", 0, false));
    }
    rows
}

/// The relation `oid` names, as `(namespace name, relation name)`.
pub(crate) fn relation_name(oid: i64, catalog: &Catalog) -> Option<(String, String)> {
    if let Some(table) = catalog.tables().find(|table| table_oid(table) == oid) {
        return Some(("public".to_owned(), table.name.clone()));
    }
    if let Some(table) = catalog.tables().find(|table| index_oid(table) == oid) {
        return Some(("public".to_owned(), table.primary_key_constraint_name()));
    }
    if let Some(offset) = oid.checked_sub(SYSTEM_TABLE_OID_BASE) {
        if let Some(table) = usize::try_from(offset)
            .ok()
            .and_then(|at| SystemTable::ALL.get(at))
        {
            return Some((SYSTEM_SCHEMA.to_owned(), table.name().to_owned()));
        }
    }
    CATALOG_RELATIONS
        .iter()
        .find(|(_, _, relation_oid)| *relation_oid == oid)
        .map(|(schema, name, _)| ((*schema).to_owned(), (*name).to_owned()))
}

/// The OID of the relation called `name` (optionally `schema.name`).
pub(crate) fn relation_oid(name: &str, catalog: &Catalog) -> Option<i64> {
    let (schema, name) = match name.split_once('.') {
        Some((schema, name)) => (Some(schema), name),
        None => (None, name),
    };
    let name = name.trim_matches('"');
    if matches!(schema, None | Some("public")) {
        if let Some(table) = catalog.table(name) {
            return Some(table_oid(table));
        }
    }
    if schema == Some(SYSTEM_SCHEMA) {
        return SystemTable::ALL
            .iter()
            .position(|table| table.name() == name)
            .map(|at| SYSTEM_TABLE_OID_BASE + i64::try_from(at).unwrap_or(0));
    }
    CATALOG_RELATIONS
        .iter()
        .find(|(relation_schema, relation, _)| {
            *relation == name && schema.is_none_or(|schema| schema == *relation_schema)
        })
        .map(|(_, _, oid)| *oid)
}

/// True when the relation is found by an unqualified name (its schema is
/// on the search path `pg_catalog, public`).
pub(crate) fn relation_visible(oid: i64, catalog: &Catalog) -> bool {
    relation_name(oid, catalog)
        .is_some_and(|(schema, _)| schema == "public" || schema == "pg_catalog")
}

const PG_NAMESPACE: Columns = &[
    ("oid", Int8),
    ("nspname", Text),
    ("nspowner", Int8),
    ("nspacl", Text),
];

const NAMESPACES: [(i64, &str); 4] = [
    (PG_CATALOG_NAMESPACE_OID, "pg_catalog"),
    (PUBLIC_NAMESPACE_OID, "public"),
    (INFORMATION_SCHEMA_NAMESPACE_OID, "information_schema"),
    (SYSTEM_NAMESPACE_OID, SYSTEM_SCHEMA),
];

fn pg_namespace_rows() -> Vec<Row> {
    NAMESPACES
        .iter()
        .map(|(oid, name)| vec![int(*oid), text(name), int(OWNER_OID), Value::Null])
        .collect()
}

pub(crate) fn namespace_name(oid: i64) -> Option<&'static str> {
    NAMESPACES
        .iter()
        .find(|(namespace, _)| *namespace == oid)
        .map(|(_, name)| *name)
}

const PG_ATTRIBUTE: Columns = &[
    ("attrelid", Int8),
    ("attname", Text),
    ("atttypid", Int8),
    ("attstattarget", Int4),
    ("attlen", Int2),
    ("attnum", Int2),
    ("attndims", Int4),
    ("atttypmod", Int4),
    ("attbyval", Bool),
    ("attalign", Text),
    ("attstorage", Text),
    ("attnotnull", Bool),
    ("atthasdef", Bool),
    ("atthasmissing", Bool),
    ("attidentity", Text),
    ("attgenerated", Text),
    ("attisdropped", Bool),
    ("attislocal", Bool),
    ("attinhcount", Int4),
    ("attcollation", Int8),
    ("attacl", Text),
    ("attoptions", Text),
];

/// `atttypmod`: VARCHAR(n) stores n + 4 (the varlena header), others -1.
fn type_modifier(length_max: Option<u32>) -> i64 {
    length_max.map_or(-1, |length| i64::from(length) + 4)
}

fn pg_attribute_rows(tables: &[&TableDescriptor]) -> Vec<Row> {
    let mut rows = Vec::new();
    for table in tables {
        for (index, column) in table.columns.iter().enumerate() {
            let not_null = !column.nullable || table.is_primary_key_column(index);
            rows.push(vec![
                int(table_oid(table)),
                text(&column.name),
                int(i64::from(column.column_type.oid())),
                int(-1),
                int(i64::from(column.column_type.type_length())),
                int(i64::try_from(index + 1).unwrap_or(i64::MAX)),
                int(0),
                int(type_modifier(column.length_max)),
                Value::Bool(
                    column.column_type.type_length() > 0 && column.column_type.type_length() <= 8,
                ),
                text("i"),
                text("x"),
                Value::Bool(not_null),
                Value::Bool(column.default.is_some()),
                Value::Bool(false),
                text(""),
                text(""),
                Value::Bool(false),
                Value::Bool(true),
                int(0),
                int(if column.column_type.is_text() { 100 } else { 0 }),
                Value::Null,
                Value::Null,
            ]);
        }
    }
    rows
}

const PG_TYPE: Columns = &[
    ("oid", Int8),
    ("typname", Text),
    ("typnamespace", Int8),
    ("typowner", Int8),
    ("typlen", Int2),
    ("typbyval", Bool),
    ("typtype", Text),
    ("typcategory", Text),
    ("typispreferred", Bool),
    ("typisdefined", Bool),
    ("typdelim", Text),
    ("typrelid", Int8),
    ("typelem", Int8),
    ("typarray", Int8),
    ("typinput", Text),
    ("typoutput", Text),
    ("typreceive", Text),
    ("typsend", Text),
    ("typnotnull", Bool),
    ("typbasetype", Int8),
    ("typtypmod", Int4),
    ("typndims", Int4),
    ("typcollation", Int8),
    ("typdefault", Text),
];

/// Types that are not column types but appear in catalog results:
/// (oid, typname, typlen, category, array oid).
const EXTRA_TYPES: [(i64, &str, i64, &str, i64); 9] = [
    (18, "char", 1, "Z", 1_002),
    (19, "name", 64, "S", 1_003),
    (26, "oid", 4, "N", 1_028),
    (22, "int2vector", -1, "A", 1_006),
    (30, "oidvector", -1, "A", 1_013),
    (2_205, "regclass", 4, "N", 2_210),
    (2_206, "regtype", 4, "N", 2_211),
    (705, "unknown", -2, "X", 0),
    (1_009, "_text", -1, "A", 0),
];

/// The array type OID of each column type (Postgres' `typarray`).
fn array_oid(column_type: ColumnType) -> i64 {
    match column_type {
        ColumnType::Bool => 1_000,
        ColumnType::Int2 => 1_005,
        ColumnType::Int4 => 1_007,
        ColumnType::Int8 => 1_016,
        ColumnType::Float4 => 1_021,
        ColumnType::Float8 => 1_022,
        ColumnType::Numeric => 1_231,
        ColumnType::Text => 1_009,
        ColumnType::Varchar => 1_015,
        ColumnType::Bytea => 1_001,
        ColumnType::Timestamp => 1_115,
        ColumnType::Timestamptz => 1_185,
        ColumnType::Date => 1_182,
        ColumnType::Uuid => 2_951,
        ColumnType::Jsonb => 3_807,
    }
}

fn category(column_type: ColumnType) -> &'static str {
    match column_type {
        ColumnType::Bool => "B",
        ColumnType::Int2
        | ColumnType::Int4
        | ColumnType::Int8
        | ColumnType::Float4
        | ColumnType::Float8
        | ColumnType::Numeric => "N",
        ColumnType::Text | ColumnType::Varchar => "S",
        ColumnType::Timestamp | ColumnType::Timestamptz | ColumnType::Date => "D",
        ColumnType::Bytea | ColumnType::Uuid | ColumnType::Jsonb => "U",
    }
}

fn type_row(oid: i64, name: &str, length: i64, category: &str, array: i64, collation: i64) -> Row {
    vec![
        int(oid),
        text(name),
        int(PG_CATALOG_NAMESPACE_OID),
        int(OWNER_OID),
        int(length),
        Value::Bool((1..=8).contains(&length)),
        text("b"),
        text(category),
        Value::Bool(false),
        Value::Bool(true),
        text(","),
        int(0),
        int(0),
        int(array),
        text(&format!("{name}in")),
        text(&format!("{name}out")),
        text(&format!("{name}recv")),
        text(&format!("{name}send")),
        Value::Bool(false),
        int(0),
        int(-1),
        int(0),
        int(collation),
        Value::Null,
    ]
}

fn pg_type_rows() -> Vec<Row> {
    let mut rows: Vec<Row> = ColumnType::ALL
        .iter()
        .map(|column_type| {
            type_row(
                i64::from(column_type.oid()),
                column_type.type_name(),
                i64::from(column_type.type_length()),
                category(*column_type),
                array_oid(*column_type),
                if column_type.is_text() { 100 } else { 0 },
            )
        })
        .collect();
    for (oid, name, length, category, array) in EXTRA_TYPES {
        rows.push(type_row(oid, name, length, category, array, 0));
    }
    rows
}

/// `format_type(oid, typmod)`: the SQL name of a type, with its length.
pub(crate) fn format_type(oid: i64, modifier: Option<i64>) -> Option<String> {
    if let Some(column_type) = ColumnType::ALL
        .into_iter()
        .find(|t| i64::from(t.oid()) == oid)
    {
        let name = column_type.sql_name();
        return Some(match modifier {
            Some(modifier) if column_type == ColumnType::Varchar && modifier >= 4 => {
                format!("{name}({})", modifier - 4)
            }
            _ => name.to_owned(),
        });
    }
    EXTRA_TYPES
        .iter()
        .find(|(extra, ..)| *extra == oid)
        .map(|(_, name, ..)| {
            if *name == "char" {
                "\"char\"".to_owned()
            } else {
                (*name).to_owned()
            }
        })
}

/// The OID of the type called `name` (`int8`, `bigint`, `text` ...).
pub(crate) fn type_oid(name: &str) -> Option<i64> {
    ColumnType::ALL
        .into_iter()
        .find(|t| t.type_name() == name || t.sql_name() == name)
        .map(|t| i64::from(t.oid()))
        .or_else(|| {
            EXTRA_TYPES
                .iter()
                .find(|(_, extra, ..)| *extra == name)
                .map(|(oid, ..)| *oid)
        })
}

const PG_INDEX: Columns = &[
    ("indexrelid", Int8),
    ("indrelid", Int8),
    ("indnatts", Int2),
    ("indnkeyatts", Int2),
    ("indisunique", Bool),
    ("indnullsnotdistinct", Bool),
    ("indisprimary", Bool),
    ("indisexclusion", Bool),
    ("indimmediate", Bool),
    ("indisclustered", Bool),
    ("indisvalid", Bool),
    ("indcheckxmin", Bool),
    ("indisready", Bool),
    ("indislive", Bool),
    ("indisreplident", Bool),
    ("indkey", Text),
    ("indcollation", Text),
    ("indclass", Text),
    ("indoption", Text),
    ("indexprs", Text),
    ("indpred", Text),
];

/// The primary-key column numbers as Postgres prints an int2vector.
fn key_columns(table: &TableDescriptor) -> String {
    table
        .primary_key
        .iter()
        .map(|column| (column + 1).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn pg_index_rows(tables: &[&TableDescriptor]) -> Vec<Row> {
    tables
        .iter()
        .map(|table| {
            let key_count = int(i64::try_from(table.primary_key.len()).unwrap_or(i64::MAX));
            vec![
                int(index_oid(table)),
                int(table_oid(table)),
                key_count.clone(),
                key_count,
                Value::Bool(true),
                Value::Bool(false),
                Value::Bool(true),
                Value::Bool(false),
                Value::Bool(true),
                Value::Bool(false),
                Value::Bool(true),
                Value::Bool(false),
                Value::Bool(true),
                Value::Bool(true),
                Value::Bool(false),
                text(&key_columns(table)),
                text(""),
                text(""),
                text(""),
                Value::Null,
                Value::Null,
            ]
        })
        .collect()
}

/// `pg_get_indexdef(oid)`: the index as a CREATE INDEX statement.
pub(crate) fn index_definition(oid: i64, catalog: &Catalog) -> Option<String> {
    let table = catalog.tables().find(|table| index_oid(table) == oid)?;
    Some(format!(
        "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
        table.primary_key_constraint_name(),
        table.name,
        table.primary_key_names().join(", ")
    ))
}

/// `pg_get_constraintdef(oid)`: constraints are primary keys, whose OID is
/// their index's.
pub(crate) fn constraint_definition(oid: i64, catalog: &Catalog) -> Option<String> {
    let table = catalog.tables().find(|table| index_oid(table) == oid)?;
    Some(format!(
        "PRIMARY KEY ({})",
        table.primary_key_names().join(", ")
    ))
}

const PG_CONSTRAINT: Columns = &[
    ("oid", Int8),
    ("conname", Text),
    ("connamespace", Int8),
    ("contype", Text),
    ("condeferrable", Bool),
    ("condeferred", Bool),
    ("convalidated", Bool),
    ("conrelid", Int8),
    ("contypid", Int8),
    ("conindid", Int8),
    ("confrelid", Int8),
    ("conkey", Text),
    ("confkey", Text),
];

fn pg_constraint_rows(tables: &[&TableDescriptor]) -> Vec<Row> {
    tables
        .iter()
        .map(|table| {
            vec![
                int(index_oid(table)),
                text(&table.primary_key_constraint_name()),
                int(PUBLIC_NAMESPACE_OID),
                text("p"),
                Value::Bool(false),
                Value::Bool(false),
                Value::Bool(true),
                int(table_oid(table)),
                int(0),
                int(index_oid(table)),
                int(0),
                text(&format!("{{{}}}", key_columns(table).replace(' ', ","))),
                Value::Null,
            ]
        })
        .collect()
}

const PG_ATTRDEF: Columns = &[
    ("oid", Int8),
    ("adrelid", Int8),
    ("adnum", Int2),
    ("adbin", Text),
];

/// A column default as `pg_get_expr` prints it.
fn default_text(default: &ColumnDefault) -> String {
    match default {
        ColumnDefault::Constant(datum) => match datum {
            Value::Null => "NULL".to_owned(),
            Value::Int(_) | Value::Float(_) | Value::Numeric(_) => datum.to_text(),
            Value::Bool(value) => value.to_string(),
            other => format!("'{}'", other.to_text().replace('\'', "''")),
        },
        ColumnDefault::CurrentTimestamp => "now()".to_owned(),
        ColumnDefault::RandomUuid => "gen_random_uuid()".to_owned(),
    }
}

fn pg_attrdef_rows(tables: &[&TableDescriptor]) -> Vec<Row> {
    let mut rows = Vec::new();
    for table in tables {
        for (index, column) in table.columns.iter().enumerate() {
            let Some(default) = &column.default else {
                continue;
            };
            let number = i64::try_from(index + 1).unwrap_or(i64::MAX);
            rows.push(vec![
                int(table_oid(table) * 1_000 + number),
                int(table_oid(table)),
                int(number),
                text(&default_text(default)),
            ]);
        }
    }
    rows
}

const PG_DATABASE: Columns = &[
    ("oid", Int8),
    ("datname", Text),
    ("datdba", Int8),
    ("encoding", Int4),
    ("datlocprovider", Text),
    ("datistemplate", Bool),
    ("datallowconn", Bool),
    ("datconnlimit", Int4),
    ("dattablespace", Int8),
    ("datcollate", Text),
    ("datctype", Text),
    ("daticulocale", Text),
    ("datcollversion", Text),
    ("datacl", Text),
];

fn pg_database_rows() -> Vec<Row> {
    vec![vec![
        int(DATABASE_OID),
        text(DATABASE_NAME),
        int(OWNER_OID),
        int(UTF8_ENCODING),
        text("c"),
        Value::Bool(false),
        Value::Bool(true),
        int(-1),
        int(1_663),
        text("C"),
        text("C"),
        Value::Null,
        Value::Null,
        Value::Null,
    ]]
}

const PG_SETTINGS: Columns = &[
    ("name", Text),
    ("setting", Text),
    ("unit", Text),
    ("category", Text),
    ("short_desc", Text),
    ("context", Text),
    ("vartype", Text),
    ("source", Text),
    ("boot_val", Text),
    ("reset_val", Text),
];

fn pg_settings_rows() -> Vec<Row> {
    // Catalog queries see no session: pg_settings shows the defaults (the
    // session's own values are what SHOW and current_setting answer).
    KNOWN_SETTINGS
        .iter()
        .map(|setting| {
            let value = crate::settings::default_value(setting.name).unwrap_or_default();
            vec![
                text(setting.name),
                text(value),
                Value::Null,
                text("Arbor"),
                text(setting.description),
                text("user"),
                text("string"),
                text("default"),
                text(value),
                text(value),
            ]
        })
        .collect()
}

const PG_AM: Columns = &[
    ("oid", Int8),
    ("amname", Text),
    ("amhandler", Text),
    ("amtype", Text),
];

fn pg_am_rows() -> Vec<Row> {
    vec![
        vec![
            int(HEAP_AM_OID),
            text("heap"),
            text("heap_tableam_handler"),
            text("t"),
        ],
        vec![
            int(BTREE_AM_OID),
            text("btree"),
            text("bthandler"),
            text("i"),
        ],
    ]
}

const PG_ROLES: Columns = &[
    ("oid", Int8),
    ("rolname", Text),
    ("rolsuper", Bool),
    ("rolinherit", Bool),
    ("rolcreaterole", Bool),
    ("rolcreatedb", Bool),
    ("rolcanlogin", Bool),
    ("usename", Text),
    ("usesysid", Int8),
];

fn pg_roles_rows() -> Vec<Row> {
    vec![vec![
        int(OWNER_OID),
        text(OWNER_NAME),
        Value::Bool(true),
        Value::Bool(true),
        Value::Bool(true),
        Value::Bool(true),
        Value::Bool(true),
        text(OWNER_NAME),
        int(OWNER_OID),
    ]]
}

const PG_TABLES: Columns = &[
    ("schemaname", Text),
    ("tablename", Text),
    ("tableowner", Text),
    ("tablespace", Text),
    ("hasindexes", Bool),
    ("hasrules", Bool),
    ("hastriggers", Bool),
    ("rowsecurity", Bool),
];

fn pg_tables_rows(tables: &[&TableDescriptor]) -> Vec<Row> {
    tables
        .iter()
        .map(|table| {
            vec![
                text("public"),
                text(&table.name),
                text(OWNER_NAME),
                Value::Null,
                Value::Bool(true),
                Value::Bool(false),
                Value::Bool(false),
                Value::Bool(false),
            ]
        })
        .collect()
}

const PG_TABLESPACE: Columns = &[("oid", Int8), ("spcname", Text), ("spcowner", Int8)];

fn pg_tablespace_rows() -> Vec<Row> {
    vec![vec![int(1_663), text("pg_default"), int(OWNER_OID)]]
}

const INFO_TABLES: Columns = &[
    ("table_catalog", Text),
    ("table_schema", Text),
    ("table_name", Text),
    ("table_type", Text),
    ("self_referencing_column_name", Text),
    ("reference_generation", Text),
    ("user_defined_type_catalog", Text),
    ("user_defined_type_schema", Text),
    ("user_defined_type_name", Text),
    ("is_insertable_into", Text),
    ("is_typed", Text),
    ("commit_action", Text),
];

fn info_tables_rows(tables: &[&TableDescriptor]) -> Vec<Row> {
    let mut rows: Vec<Row> = tables
        .iter()
        .map(|table| {
            vec![
                text(DATABASE_NAME),
                text("public"),
                text(&table.name),
                text("BASE TABLE"),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                text("YES"),
                text("NO"),
                Value::Null,
            ]
        })
        .collect();
    for table in SystemTable::ALL {
        rows.push(vec![
            text(DATABASE_NAME),
            text(SYSTEM_SCHEMA),
            text(table.name()),
            text("VIEW"),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            text("NO"),
            text("NO"),
            Value::Null,
        ]);
    }
    rows
}

const INFO_COLUMNS: Columns = &[
    ("table_catalog", Text),
    ("table_schema", Text),
    ("table_name", Text),
    ("column_name", Text),
    ("ordinal_position", Int4),
    ("column_default", Text),
    ("is_nullable", Text),
    ("data_type", Text),
    ("character_maximum_length", Int4),
    ("numeric_precision", Int4),
    ("numeric_scale", Int4),
    ("datetime_precision", Int4),
    ("udt_catalog", Text),
    ("udt_schema", Text),
    ("udt_name", Text),
    ("is_identity", Text),
    ("is_generated", Text),
    ("is_updatable", Text),
];

fn numeric_precision(column_type: ColumnType) -> Value {
    match column_type {
        ColumnType::Int2 => int(16),
        ColumnType::Int4 => int(32),
        ColumnType::Int8 => int(64),
        ColumnType::Float4 => int(24),
        ColumnType::Float8 => int(53),
        _ => Value::Null,
    }
}

fn info_columns_rows(tables: &[&TableDescriptor]) -> Vec<Row> {
    let mut rows = Vec::new();
    for table in tables {
        for (index, column) in table.columns.iter().enumerate() {
            let nullable = column.nullable && !table.is_primary_key_column(index);
            let is_datetime = matches!(
                column.column_type,
                ColumnType::Timestamp | ColumnType::Timestamptz | ColumnType::Date
            );
            rows.push(vec![
                text(DATABASE_NAME),
                text("public"),
                text(&table.name),
                text(&column.name),
                int(i64::try_from(index + 1).unwrap_or(i64::MAX)),
                column
                    .default
                    .as_ref()
                    .map_or(Value::Null, |default| text(&default_text(default))),
                text(if nullable { "YES" } else { "NO" }),
                text(column.column_type.sql_name()),
                column
                    .length_max
                    .map_or(Value::Null, |length| int(i64::from(length))),
                numeric_precision(column.column_type),
                if column.column_type.is_integer() {
                    int(0)
                } else {
                    Value::Null
                },
                if is_datetime {
                    int(if column.column_type == ColumnType::Date {
                        0
                    } else {
                        6
                    })
                } else {
                    Value::Null
                },
                text(DATABASE_NAME),
                text("pg_catalog"),
                text(column.column_type.type_name()),
                text("NO"),
                text("NEVER"),
                text("YES"),
            ]);
        }
    }
    rows
}

const INFO_SCHEMATA: Columns = &[
    ("catalog_name", Text),
    ("schema_name", Text),
    ("schema_owner", Text),
    ("default_character_set_catalog", Text),
    ("default_character_set_schema", Text),
    ("default_character_set_name", Text),
    ("sql_path", Text),
];

fn info_schemata_rows() -> Vec<Row> {
    NAMESPACES
        .iter()
        .map(|(_, name)| {
            vec![
                text(DATABASE_NAME),
                text(name),
                text(OWNER_NAME),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
            ]
        })
        .collect()
}

// Relations Arbor has no objects for: served empty, with the columns the
// metadata queries of psql and drivers name.
const PG_DESCRIPTION: Columns = &[
    ("objoid", Int8),
    ("classoid", Int8),
    ("objsubid", Int4),
    ("description", Text),
];
const PG_COLLATION: Columns = &[("oid", Int8), ("collname", Text), ("collnamespace", Int8)];
const PG_PROC: Columns = &[
    ("oid", Int8),
    ("proname", Text),
    ("pronamespace", Int8),
    ("prorettype", Int8),
];
const PG_INHERITS: Columns = &[
    ("inhrelid", Int8),
    ("inhparent", Int8),
    ("inhseqno", Int4),
    ("inhdetachpending", Bool),
];
const PG_POLICY: Columns = &[
    ("oid", Int8),
    ("polname", Text),
    ("polrelid", Int8),
    ("polcmd", Text),
    ("polpermissive", Bool),
    ("polroles", Text),
    ("polqual", Text),
    ("polwithcheck", Text),
];
const PG_STATISTIC_EXT: Columns = &[
    ("oid", Int8),
    ("stxrelid", Int8),
    ("stxname", Text),
    ("stxnamespace", Int8),
    ("stxstattarget", Int4),
    ("stxkind", Text),
];
const PG_PUBLICATION: Columns = &[("oid", Int8), ("pubname", Text), ("puballtables", Bool)];
const PG_PUBLICATION_NAMESPACE: Columns = &[("oid", Int8), ("pnpubid", Int8), ("pnnspid", Int8)];
const PG_PUBLICATION_REL: Columns = &[
    ("oid", Int8),
    ("prpubid", Int8),
    ("prrelid", Int8),
    ("prqual", Text),
    ("prattrs", Text),
];
const PG_TRIGGER: Columns = &[
    ("oid", Int8),
    ("tgrelid", Int8),
    ("tgname", Text),
    ("tgisinternal", Bool),
];
const PG_EXTENSION: Columns = &[
    ("oid", Int8),
    ("extname", Text),
    ("extversion", Text),
    ("extnamespace", Int8),
];
const PG_ENUM: Columns = &[
    ("oid", Int8),
    ("enumtypid", Int8),
    ("enumsortorder", SqlType::Float4),
    ("enumlabel", Text),
];
const PG_RANGE: Columns = &[("rngtypid", Int8), ("rngsubtype", Int8)];
const PG_SEQUENCE: Columns = &[("seqrelid", Int8), ("seqtypid", Int8)];
const PG_MATVIEWS: Columns = &[
    ("schemaname", Text),
    ("matviewname", Text),
    ("definition", Text),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_relation_renders_rows_matching_its_columns() {
        let catalog = Catalog::empty();
        for (schema, name, _) in CATALOG_RELATIONS {
            let table = render(schema, name, &catalog);
            assert!(!table.columns.is_empty(), "{schema}.{name} has no columns");
            for row in &table.rows {
                assert_eq!(row.len(), table.columns.len(), "{schema}.{name}");
            }
        }
    }

    #[test]
    fn oids_resolve_both_ways() {
        let catalog = Catalog::empty();
        let kv = catalog.table("kv").expect("kv is built in");
        assert_eq!(relation_oid("kv", &catalog), Some(table_oid(kv)));
        assert_eq!(
            relation_name(table_oid(kv), &catalog),
            Some(("public".into(), "kv".into()))
        );
        assert_eq!(relation_oid("pg_class", &catalog), Some(1_259));
        assert_eq!(
            format_type(1_043, Some(44)).as_deref(),
            Some("character varying(40)")
        );
        assert_eq!(type_oid("int8"), Some(20));
    }
}
