//! Catalog queries as psql and drivers send them, run against a catalog
//! snapshot without a cluster.

use arbor_catalog::{Catalog, ColumnDefault, ColumnDescriptor, Datum, TableDescriptor, TableId};

use super::*;

fn catalog() -> Catalog {
    let table = TableDescriptor::new(
        TableId(100),
        "accounts",
        vec![
            ColumnDescriptor::new("id", crate::value::SqlType::Int8),
            ColumnDescriptor {
                nullable: false,
                length_max: Some(40),
                ..ColumnDescriptor::new("owner", crate::value::SqlType::Varchar)
            },
            ColumnDescriptor {
                default: Some(ColumnDefault::Constant(Datum::Float(1.5))),
                ..ColumnDescriptor::new("balance", crate::value::SqlType::Float8)
            },
        ],
        vec![0],
    )
    .expect("valid table");
    Catalog::empty()
        .with_table_created(table)
        .expect("new table")
}

fn run(sql: &str) -> Vec<Vec<String>> {
    let statement = crate::executor::parse_sql(sql)
        .expect("valid SQL")
        .remove(0);
    assert!(
        is_catalog_query(&statement) || is_constant_query(&statement),
        "{sql}"
    );
    match execute(&statement, &[], &catalog()).unwrap_or_else(|error| panic!("{sql}: {error}")) {
        QueryResult::Rows { rows, .. } => rows
            .into_iter()
            .map(|row| {
                row.iter()
                    .map(|value| {
                        if value.is_null() {
                            "NULL".to_owned()
                        } else {
                            value.to_text()
                        }
                    })
                    .collect()
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| row.iter().map(|cell| (*cell).to_owned()).collect())
        .collect()
}

/// psql 15's `\dt`.
const PSQL_LIST_TABLES: &str = r#"SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;"#;

#[test]
fn psql_list_tables_shows_user_tables_only() {
    assert_eq!(
        run(PSQL_LIST_TABLES),
        strings(&[
            &["public", "accounts", "table", "arbor"],
            &["public", "kv", "table", "arbor"]
        ])
    );
}

#[test]
fn psql_describe_finds_the_table_and_its_columns() {
    let found = run(
        r#"SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(accounts)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3;"#,
    );
    assert_eq!(found.len(), 1);
    let oid = &found[0][0];
    let columns = run(&format!(
        r#"SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '{oid}' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;"#
    ));
    assert_eq!(
        columns,
        strings(&[
            &["id", "bigint", "NULL", "t", "NULL", "", ""],
            &[
                "owner",
                "character varying(40)",
                "NULL",
                "t",
                "NULL",
                "",
                ""
            ],
            &["balance", "double precision", "1.5", "f", "NULL", "", ""],
        ])
    );
    let indexes = run(&format!(
        r#"SELECT c2.relname, i.indisprimary, i.indisunique, i.indisclustered, i.indisvalid, pg_catalog.pg_get_indexdef(i.indexrelid, 0, true),
  pg_catalog.pg_get_constraintdef(con.oid, true), contype, condeferrable, condeferred, i.indisreplident, c2.reltablespace
FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i
  LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = i.indexrelid AND contype IN ('p','u','x'))
WHERE c.oid = '{oid}' AND c.oid = i.indrelid AND i.indexrelid = c2.oid
ORDER BY i.indisprimary DESC, c2.relname;"#
    ));
    assert_eq!(indexes.len(), 1);
    assert_eq!(indexes[0][0], "accounts_pkey");
    assert_eq!(
        indexes[0][5],
        "CREATE UNIQUE INDEX accounts_pkey ON public.accounts USING btree (id)"
    );
    assert_eq!(indexes[0][6], "PRIMARY KEY (id)");
}

#[test]
fn psql_describe_side_queries_over_empty_relations_answer_nothing() {
    let publications = run(
        r#"SELECT pubname , NULL , NULL FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
WHERE pc.oid ='16584' and pg_catalog.pg_relation_is_publishable('16584')
UNION
SELECT pubname , pg_get_expr(pr.prqual, c.oid)
     , (CASE WHEN pr.prattrs IS NOT NULL THEN
         (SELECT string_agg(attname, ', ')
           FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,
                pg_catalog.pg_attribute
          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])
        ELSE NULL END) FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
WHERE pr.prrelid = '16584'
UNION
SELECT pubname , NULL , NULL FROM pg_catalog.pg_publication p
WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('16584')
ORDER BY 1;"#,
    );
    assert!(publications.is_empty());
}

#[test]
fn psql_list_databases_shows_arbor() {
    let databases = run(r#"SELECT d.datname as "Name",
       pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
       pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",
       d.datcollate as "Collate",
       CASE d.datlocprovider WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' END AS "Locale Provider",
       pg_catalog.array_to_string(d.datacl, E'\n') AS "Access privileges"
FROM pg_catalog.pg_database d
ORDER BY 1;"#);
    assert_eq!(
        databases,
        strings(&[&["arbor", "arbor", "UTF8", "C", "libc", "NULL"]])
    );
}

#[test]
fn pgjdbc_get_columns_numbers_columns_with_row_number() {
    let columns = run(
        r#"SELECT * FROM (SELECT n.nspname,c.relname,a.attname,a.atttypid,a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) AS attnotnull,a.atttypmod,a.attlen,t.typtypmod,row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS attnum, nullif(a.attidentity, '') as attidentity,nullif(a.attgenerated, '') as attgenerated,pg_catalog.pg_get_expr(def.adbin, def.adrelid) AS adsrc,dsc.description,t.typbasetype,t.typtype  FROM pg_catalog.pg_namespace n  JOIN pg_catalog.pg_class c ON (c.relnamespace = n.oid)  JOIN pg_catalog.pg_attribute a ON (a.attrelid=c.oid)  JOIN pg_catalog.pg_type t ON (a.atttypid = t.oid)  LEFT JOIN pg_catalog.pg_attrdef def ON (a.attrelid=def.adrelid AND a.attnum = def.adnum)  LEFT JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)  LEFT JOIN pg_catalog.pg_class dc ON (dc.oid=dsc.classoid AND dc.relname='pg_class')  LEFT JOIN pg_catalog.pg_namespace dn ON (dc.relnamespace=dn.oid AND dn.nspname='pg_catalog')  WHERE c.relkind in ('r','p','v','f','m') and a.attnum > 0 AND NOT a.attisdropped  AND n.nspname LIKE 'public' AND c.relname LIKE 'accounts') c WHERE true  ORDER BY nspname,c.relname,attnum "#,
    );
    let summary: Vec<(String, String, String)> = columns
        .iter()
        .map(|row| (row[2].clone(), row[3].clone(), row[8].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("id".into(), "20".into(), "1".into()),
            ("owner".into(), "1043".into(), "2".into()),
            ("balance".into(), "701".into(), "3".into()),
        ]
    );
}

#[test]
fn sqlalchemy_has_table_matches_only_existing_tables() {
    let query = |name: &str| {
        format!(
            "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace WHERE pg_catalog.pg_class.relname = '{name}' AND pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p', 'f', 'v', 'm']) AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != 'pg_catalog'"
        )
    };
    assert_eq!(run(&query("accounts")), strings(&[&["accounts"]]));
    assert!(run(&query("missing")).is_empty());
}

#[test]
fn information_schema_lists_tables_and_columns() {
    assert_eq!(
        run("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"),
        strings(&[&["accounts"], &["kv"]])
    );
    assert_eq!(
        run("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'accounts' ORDER BY ordinal_position"),
        strings(&[
            &["id", "bigint", "NO"],
            &["owner", "character varying", "NO"],
            &["balance", "double precision", "YES"],
        ])
    );
    assert_eq!(
        run("SELECT count(*) FROM information_schema.schemata"),
        strings(&[&["4"]])
    );
}

#[test]
fn constant_queries_answer_session_functions() {
    assert_eq!(
        run("SELECT current_setting('server_version_num')::int >= 90600, current_database(), pg_catalog.version() LIKE 'PostgreSQL%'"),
        strings(&[&["t", "arbor", "t"]])
    );
    assert_eq!(
        run("SELECT 'pg_class'::regclass::oid"),
        strings(&[&["1259"]])
    );
}

#[test]
fn grouping_and_aggregates_work_over_catalog_rows() {
    assert_eq!(
        run("SELECT attrelid::regclass, count(*), array_agg(attname) FROM pg_attribute GROUP BY attrelid ORDER BY 1"),
        strings(&[&["accounts", "3", "{id,owner,balance}"], &["kv", "2", "{k,v}"]])
    );
}

#[test]
fn unknown_functions_and_relations_fail_with_their_sqlstates() {
    let fail = |sql: &str| {
        let statement = crate::executor::parse_sql(sql)
            .expect("valid SQL")
            .remove(0);
        execute(&statement, &[], &catalog())
            .expect_err(sql)
            .sqlstate()
    };
    assert_eq!(
        fail("SELECT no_such_function(relname) FROM pg_class"),
        "42883"
    );
    assert_eq!(
        fail("SELECT * FROM pg_catalog.pg_no_such_relation"),
        "42P01"
    );
    assert_eq!(fail("SELECT nope FROM pg_class"), "42703");
    assert_eq!(fail("SELECT * FROM pg_class, accounts"), "0A000");
    assert_eq!(
        fail("SELECT relname FROM pg_class WHERE relname ~ '('"),
        "2201B"
    );
}
