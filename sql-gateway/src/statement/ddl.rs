//! CREATE TABLE and DROP TABLE.
//!
//! Planning is pure (sqlparser AST -> descriptor); execution reads the
//! current catalog, applies the change ([`arbor_catalog::Catalog`] does the
//! checks: duplicate names, ids), and commits it to root with the version it
//! read as precondition. On a version mismatch it re-reads and re-applies,
//! so a concurrent CREATE of the same name ends as 42P07 for one of them.
//! DROP TABLE then deletes the table's key range in bounded batches; the
//! table is already invisible and its id is never reused, so a crash midway
//! leaves only unreachable keys.

use arbor_catalog::{
    table_key_range, Catalog, ColumnDefault, ColumnDescriptor, ColumnType, TableDescriptor, TableId,
};
use sqlparser::ast::{self, ColumnOption, ObjectName, ObjectType, TableConstraint};

use super::{assign, delete_key, QueryResult, WRITE_ROWS_MAX};
use crate::bind::{column_type, normalize_ident, Scope};
use crate::catalog_source::{CatalogSource, CommitOutcome, DDL_ATTEMPTS_MAX};
use crate::error::GatewayError;
use crate::expr::Expr;
use crate::plan::name_parts;
use crate::store::KvStore;

#[derive(Debug)]
pub(crate) struct CreateTablePlan {
    table: TableDescriptor,
    if_not_exists: bool,
}

#[derive(Debug)]
pub(crate) struct DropTablePlan {
    names: Vec<String>,
    if_exists: bool,
}

/// The table name of a DDL statement: `t` or `public.t`.
fn table_name(name: &ObjectName) -> Result<String, GatewayError> {
    match name_parts(name).as_deref() {
        Some([table]) => Ok(table.clone()),
        Some([schema, table]) if schema == "public" => Ok(table.clone()),
        _ => Err(GatewayError::unsupported(format!(
            "tables outside schema public ({name})"
        ))),
    }
}

impl CreateTablePlan {
    pub(crate) fn plan(create: &ast::CreateTable) -> Result<Self, GatewayError> {
        if create.or_replace || create.temporary || create.external || create.query.is_some() {
            return Err(GatewayError::unsupported(
                "CREATE OR REPLACE/TEMPORARY/EXTERNAL TABLE and CREATE TABLE AS",
            ));
        }
        let name = table_name(&create.name)?;
        let mut columns = Vec::with_capacity(create.columns.len());
        let mut primary_key: Vec<String> = Vec::new();
        for definition in &create.columns {
            let column_name = normalize_ident(&definition.name);
            let (sql_type, length_max) = column_type(&definition.data_type)?;
            let mut column = ColumnDescriptor {
                length_max,
                ..ColumnDescriptor::new(column_name.clone(), sql_type)
            };
            for option in &definition.options {
                match &option.option {
                    ColumnOption::Null => column.nullable = true,
                    ColumnOption::NotNull => column.nullable = false,
                    ColumnOption::Default(expr) => {
                        column.default = Some(plan_default(expr, &column)?)
                    }
                    ColumnOption::PrimaryKey(_) => {
                        if !primary_key.is_empty() {
                            return Err(GatewayError::Syntax {
                                message: format!(
                                    "multiple primary keys for table \"{name}\" are not allowed"
                                ),
                            });
                        }
                        primary_key.push(column_name.clone());
                        column.nullable = false;
                    }
                    other => {
                        return Err(GatewayError::unsupported(format!("column option {other}")))
                    }
                }
            }
            columns.push(column);
        }
        for constraint in &create.constraints {
            match constraint {
                TableConstraint::PrimaryKey(key) => {
                    if !primary_key.is_empty() {
                        return Err(GatewayError::Syntax {
                            message: format!(
                                "multiple primary keys for table \"{name}\" are not allowed"
                            ),
                        });
                    }
                    for column in &key.columns {
                        let ast::Expr::Identifier(ident) = &column.column.expr else {
                            return Err(GatewayError::unsupported("expressions in PRIMARY KEY"));
                        };
                        primary_key.push(normalize_ident(ident));
                    }
                }
                other => {
                    return Err(GatewayError::unsupported(format!(
                        "table constraint {other}"
                    )))
                }
            }
        }
        if primary_key.is_empty() {
            return Err(GatewayError::unsupported(
                "tables without a PRIMARY KEY (every Arbor table is keyed by one)",
            ));
        }
        let mut key_indexes = Vec::with_capacity(primary_key.len());
        for key_column in &primary_key {
            let index = columns
                .iter()
                .position(|column| column.name == *key_column)
                .ok_or_else(|| GatewayError::UndefinedColumn {
                    name: key_column.clone(),
                })?;
            if key_indexes.contains(&index) {
                return Err(GatewayError::DuplicateColumn {
                    name: key_column.clone(),
                });
            }
            columns[index].nullable = false;
            key_indexes.push(index);
        }
        for (index, column) in columns.iter().enumerate() {
            if columns[..index]
                .iter()
                .any(|other| other.name == column.name)
            {
                return Err(GatewayError::DuplicateColumn {
                    name: column.name.clone(),
                });
            }
        }
        // The id is assigned when the change is applied to the catalog.
        let table = TableDescriptor::new(TableId(0), name, columns, key_indexes)?;
        Ok(CreateTablePlan {
            table,
            if_not_exists: create.if_not_exists,
        })
    }

    pub(crate) async fn execute(
        &self,
        catalogs: &dyn CatalogSource,
    ) -> Result<QueryResult, GatewayError> {
        let summary = format!("CREATE TABLE {}", self.table.name);
        change_catalog(catalogs, &summary, |catalog| {
            match catalog.with_table_created(self.table.clone()) {
                Ok(next) => Ok(Some(next)),
                Err(arbor_catalog::CatalogError::DuplicateTable { .. }) if self.if_not_exists => {
                    Ok(None)
                }
                Err(error) => Err(error.into()),
            }
        })
        .await?;
        Ok(QueryResult::Command {
            tag: "CREATE TABLE",
            rows: None,
        })
    }
}

/// A DEFAULT clause: a constant of the column's type. Defaults computed per
/// row (now(), gen_random_uuid(), sequences) are not supported yet.
fn plan_default(
    expr: &ast::Expr,
    column: &ColumnDescriptor,
) -> Result<ColumnDefault, GatewayError> {
    let scope = Scope::constant(&[]);
    let bound = scope.bind(expr).map_err(|error| match error {
        GatewayError::UndefinedFunction { name } => {
            GatewayError::unsupported(format!("DEFAULT {name} (only constant defaults)"))
        }
        other => other,
    })?;
    let time_column = matches!(
        column.column_type,
        ColumnType::Timestamp | ColumnType::Timestamptz | ColumnType::Date
    );
    match bound.expr {
        Expr::Literal(value) => Ok(ColumnDefault::Constant(assign(value, column.column_type)?)),
        // `DEFAULT now()` / `CURRENT_TIMESTAMP`: the insert's statement time,
        // as the column's type.
        Expr::StatementTime { .. } if time_column => Ok(ColumnDefault::CurrentTimestamp),
        Expr::StatementTime { .. } => Err(GatewayError::DatatypeMismatch {
            message: format!(
                "column \"{}\" is of type {} but default expression is of type timestamp with time zone",
                column.name,
                column.column_type.sql_name()
            ),
        }),
        _ => Err(GatewayError::unsupported(
            "non-constant DEFAULT (constants and now() / CURRENT_TIMESTAMP only)",
        )),
    }
}

impl DropTablePlan {
    pub(crate) fn plan(
        object_type: ObjectType,
        if_exists: bool,
        names: &[ObjectName],
        cascade: bool,
    ) -> Result<Self, GatewayError> {
        if object_type != ObjectType::Table {
            return Err(GatewayError::unsupported(format!("DROP {object_type}")));
        }
        if cascade {
            return Err(GatewayError::unsupported("DROP TABLE ... CASCADE"));
        }
        let names = names.iter().map(table_name).collect::<Result<_, _>>()?;
        Ok(DropTablePlan { names, if_exists })
    }

    pub(crate) async fn execute(
        &self,
        catalogs: &dyn CatalogSource,
        store: &dyn KvStore,
    ) -> Result<QueryResult, GatewayError> {
        let summary = format!("DROP TABLE {}", self.names.join(", "));
        let dropped = change_catalog(catalogs, &summary, |catalog| {
            let mut next = catalog.clone();
            let mut dropped = Vec::new();
            for name in &self.names {
                match next.with_table_dropped(name) {
                    Ok((after, table)) => {
                        next = after;
                        dropped.push(table);
                    }
                    Err(arbor_catalog::CatalogError::UndefinedTable { .. }) if self.if_exists => {}
                    Err(error) => return Err(error.into()),
                }
            }
            Ok((!dropped.is_empty()).then_some(next))
        })
        .await?;
        for table in dropped {
            delete_table_data(store, table.id).await?;
        }
        Ok(QueryResult::Command {
            tag: "DROP TABLE",
            rows: None,
        })
    }
}

/// Reads the catalog, applies `change` (None = nothing to do), and commits
/// with the read version as precondition, retrying lost races. Returns the
/// tables the committed change removed.
async fn change_catalog(
    catalogs: &dyn CatalogSource,
    summary: &str,
    change: impl Fn(&Catalog) -> Result<Option<Catalog>, GatewayError>,
) -> Result<Vec<TableDescriptor>, GatewayError> {
    for _ in 0..DDL_ATTEMPTS_MAX {
        let current = catalogs.current().await?;
        let Some(next) = change(&current)? else {
            return Ok(Vec::new());
        };
        match catalogs.commit(current.version, &next, summary).await? {
            CommitOutcome::Committed => {
                let removed = current
                    .tables()
                    .filter(|table| {
                        next.table(&table.name)
                            .is_none_or(|kept| kept.id != table.id)
                    })
                    .cloned()
                    .collect();
                return Ok(removed);
            }
            CommitOutcome::VersionMismatch => continue,
        }
    }
    Err(GatewayError::CatalogContention {
        attempts: DDL_ATTEMPTS_MAX,
    })
}

/// Deletes every key of a dropped table, one bounded batch at a time.
async fn delete_table_data(store: &dyn KvStore, table: TableId) -> Result<(), GatewayError> {
    let (start, end) = table_key_range(table);
    loop {
        let page = store.scan(&start, &end, WRITE_ROWS_MAX).await?;
        if page.is_empty() {
            return Ok(());
        }
        let mutations = page.into_iter().map(|(key, _)| delete_key(key)).collect();
        store.write(mutations).await?;
    }
}
