//! Name resolution for catalog queries: which relation column a (possibly
//! qualified) name means, in this query or an enclosing one (correlated
//! subqueries), plus the per-row context aggregates and window functions
//! read.

use std::collections::HashMap;

use crate::error::GatewayError;
use crate::value::{Column, Row, SqlType, Value};

/// One relation of a FROM clause; its columns occupy
/// `offset..offset + columns.len()` of the joined row.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    pub(crate) offset: usize,
}

/// Values of each window function call (keyed by its SQL text), by row.
pub(crate) type WindowValues = HashMap<String, Vec<Value>>;

/// What names mean while evaluating one row.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'s> {
    pub(crate) bindings: &'s [Binding],
    pub(crate) row: &'s [Value],
    pub(crate) outer: Option<&'s Scope<'s>>,
    /// The rows of the current group, when aggregates are being computed.
    pub(crate) group: Option<&'s [Row]>,
    pub(crate) window: Option<(&'s WindowValues, usize)>,
}

impl<'s> Scope<'s> {
    pub(crate) fn new(
        bindings: &'s [Binding],
        row: &'s [Value],
        outer: Option<&'s Scope<'s>>,
    ) -> Self {
        Scope {
            bindings,
            row,
            outer,
            group: None,
            window: None,
        }
    }

    /// The value and type of the column `qualifier.name` (or `name`).
    /// Missing values (typing without a row) are NULL.
    pub(crate) fn column(
        &self,
        qualifier: Option<&str>,
        name: &str,
    ) -> Result<(Value, SqlType), GatewayError> {
        let mut scope = Some(self);
        while let Some(current) = scope {
            if let Some((index, sql_type)) = current.find(qualifier, name)? {
                let value = current.row.get(index).cloned().unwrap_or(Value::Null);
                return Ok((value, sql_type));
            }
            scope = current.outer;
        }
        Err(GatewayError::UndefinedColumn {
            name: match qualifier {
                Some(qualifier) => format!("{qualifier}.{name}"),
                None => name.to_owned(),
            },
        })
    }

    fn find(
        &self,
        qualifier: Option<&str>,
        name: &str,
    ) -> Result<Option<(usize, SqlType)>, GatewayError> {
        let mut found = None;
        for binding in self.bindings {
            if qualifier.is_some_and(|qualifier| qualifier != binding.name) {
                continue;
            }
            if let Some(index) = binding
                .columns
                .iter()
                .position(|column| column.name == name)
            {
                if found.is_some() && qualifier.is_none() {
                    return Err(GatewayError::AmbiguousColumn {
                        name: name.to_owned(),
                    });
                }
                found = Some((binding.offset + index, binding.columns[index].sql_type));
                if qualifier.is_some() {
                    break;
                }
            }
        }
        Ok(found)
    }
}
