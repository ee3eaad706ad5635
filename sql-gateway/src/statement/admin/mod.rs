//! Admin statements sqlparser does not know, recognised in the token
//! stream before it parses anything: `ALTER TABLE t SPLIT AT VALUES (...)`
//! (CockroachDB's syntax: split the table's regions at primary-key values),
//! its inverse `ALTER TABLE t UNSPLIT AT VALUES (...)` (merge the region
//! starting at each value into its left neighbour) and `SHOW REGIONS FROM
//! TABLE t` (`SHOW RANGES FROM TABLE t` is the same).
//!
//! Recognition uses sqlparser's own tokenizer and parser (keywords, object
//! names, and the `VALUES` query after `SPLIT AT`), so quoting, comments
//! and literals follow the same rules as every other statement. A query
//! text without an admin statement is parsed exactly as before, in one
//! pass over the same tokens.
//!
//! Invariant: a split key is the memcomparable key prefix the catalog
//! encodes rows with (`arbor_catalog::encode_key_prefix`), so every row
//! whose primary key is below the SPLIT AT value sorts left of it and every
//! row at or above it sorts right — the split moves no row across a value.

pub(crate) mod key_text;
pub(crate) mod show_regions;
pub(crate) mod split_at;
pub(crate) mod unsplit_at;

use sqlparser::ast::{ObjectName, Query};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::GatewayError;
use crate::value::{Column, SqlType};

/// One admin statement, as recognised from its tokens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AdminStatement {
    /// `ALTER TABLE <table> SPLIT AT <rows>`; `rows` is a `VALUES` query
    /// (checked when planned).
    SplitAt { table: ObjectName, rows: Box<Query> },
    /// `ALTER TABLE <table> UNSPLIT AT <rows>`; `rows` as for SPLIT AT.
    UnsplitAt { table: ObjectName, rows: Box<Query> },
    /// `SHOW REGIONS FROM TABLE <table>` / `SHOW RANGES FROM TABLE <table>`.
    ShowRegions { table: ObjectName },
}

/// The statement name errors and metrics use.
pub(crate) const SPLIT_AT_STATEMENT: &str = "ALTER TABLE ... SPLIT AT";
pub(crate) const UNSPLIT_AT_STATEMENT: &str = "ALTER TABLE ... UNSPLIT AT";

impl AdminStatement {
    /// The result columns (fixed: Describe needs no catalog).
    pub(crate) fn columns(&self) -> Vec<Column> {
        match self {
            AdminStatement::SplitAt { .. } => split_at::columns(),
            AdminStatement::UnsplitAt { .. } => unsplit_at::columns(),
            AdminStatement::ShowRegions { .. } => show_regions::columns(),
        }
    }

    /// Whether the statement changes the cluster (and so cannot run inside
    /// a transaction block, whose ROLLBACK could not undo it).
    pub(crate) fn changes_cluster(&self) -> bool {
        matches!(
            self,
            AdminStatement::SplitAt { .. } | AdminStatement::UnsplitAt { .. }
        )
    }

    /// The table the statement names.
    pub(crate) fn table(&self) -> &ObjectName {
        match self {
            AdminStatement::SplitAt { table, .. }
            | AdminStatement::UnsplitAt { table, .. }
            | AdminStatement::ShowRegions { table } => table,
        }
    }
}

/// A parsed statement: sqlparser's, or an admin statement.
#[derive(Debug, Clone)]
pub(crate) enum ParsedStatement {
    Sql(sqlparser::ast::Statement),
    Admin(AdminStatement),
}

/// Parses every statement of `tokens` (one query text). Without an admin
/// statement among them this is sqlparser's `parse_statements` over the
/// same tokens; otherwise each `;`-separated part is parsed on its own.
pub(crate) fn parse_tokens(
    tokens: Vec<TokenWithSpan>,
) -> Result<Vec<ParsedStatement>, GatewayError> {
    let dialect = PostgreSqlDialect {};
    if !statement_starts(&tokens).any(|start| starts_admin(&tokens[start..])) {
        let statements = Parser::new(&dialect)
            .with_tokens_with_locations(tokens)
            .parse_statements()?;
        return Ok(statements.into_iter().map(ParsedStatement::Sql).collect());
    }
    let mut parsed = Vec::new();
    for part in tokens.split(|token| token.token == Token::SemiColon) {
        if starts_admin(part) {
            parsed.push(ParsedStatement::Admin(parse_admin(part.to_vec())?));
            continue;
        }
        let statements = Parser::new(&dialect)
            .with_tokens_with_locations(part.to_vec())
            .parse_statements()?;
        parsed.extend(statements.into_iter().map(ParsedStatement::Sql));
    }
    Ok(parsed)
}

/// Indexes where a statement may start: the first token and each one after
/// a `;` (semicolons only ever separate statements in the token stream;
/// inside strings and comments they are part of one token).
fn statement_starts(tokens: &[TokenWithSpan]) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(0).chain(
        tokens
            .iter()
            .enumerate()
            .filter(|(_, token)| token.token == Token::SemiColon)
            .map(|(index, _)| index + 1),
    )
}

/// The next `count` tokens that are not whitespace or comments.
fn significant(tokens: &[TokenWithSpan], count: usize) -> Vec<&Token> {
    tokens
        .iter()
        .map(|token| &token.token)
        .take_while(|token| **token != Token::SemiColon)
        .filter(|token| !matches!(token, Token::Whitespace(_)))
        .take(count)
        .collect()
}

/// An unquoted word, compared as Postgres folds it.
fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// Whether the statement starting at `tokens` is an admin statement: `SHOW
/// REGIONS|RANGES ...`, or `ALTER TABLE <name> SPLIT|UNSPLIT AT ...`.
fn starts_admin(tokens: &[TokenWithSpan]) -> bool {
    let head = significant(tokens, 2);
    match head.as_slice() {
        [show, what] if is_word(show, "SHOW") => {
            is_word(what, "REGIONS") || is_word(what, "RANGES")
        }
        [alter, table] if is_word(alter, "ALTER") && is_word(table, "TABLE") => {
            split_at_follows_name(tokens)
        }
        _ => false,
    }
}

/// After `ALTER TABLE`, a table name and then `SPLIT AT` or `UNSPLIT AT`.
fn split_at_follows_name(tokens: &[TokenWithSpan]) -> bool {
    let dialect = PostgreSqlDialect {};
    let statement: Vec<TokenWithSpan> = tokens
        .iter()
        .take_while(|token| token.token != Token::SemiColon)
        .cloned()
        .collect();
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(statement);
    parser.parse_keywords(&[Keyword::ALTER, Keyword::TABLE])
        && parser.parse_object_name(false).is_ok()
        && {
            let verb = parser.next_token().token;
            is_word(&verb, "SPLIT") || is_word(&verb, "UNSPLIT")
        }
        && parser.parse_keyword(Keyword::AT)
}

/// Parses one admin statement (the tokens between two `;`), which
/// [`starts_admin`] recognised.
fn parse_admin(tokens: Vec<TokenWithSpan>) -> Result<AdminStatement, GatewayError> {
    let dialect = PostgreSqlDialect {};
    let placeholder = tokens
        .iter()
        .any(|token| matches!(token.token, Token::Placeholder(_)));
    let unsplit = significant(&tokens, usize::MAX)
        .into_iter()
        .any(|token| is_word(token, "UNSPLIT"));
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let show = parser.parse_keyword(Keyword::SHOW);
    if placeholder {
        // Split keys and table names are fixed when the statement is
        // prepared; binding `$n` would need parameter typing for statements
        // sqlparser never sees.
        let statement = if show {
            "SHOW REGIONS"
        } else if unsplit {
            UNSPLIT_AT_STATEMENT
        } else {
            SPLIT_AT_STATEMENT
        };
        return Err(GatewayError::unsupported(format!(
            "parameters in {statement}"
        )));
    }
    let statement = if show {
        // REGIONS or RANGES, checked by `starts_admin`.
        parser.next_token();
        parser.expect_keywords(&[Keyword::FROM, Keyword::TABLE])?;
        AdminStatement::ShowRegions {
            table: parser.parse_object_name(false)?,
        }
    } else {
        parser.expect_keywords(&[Keyword::ALTER, Keyword::TABLE])?;
        let table = parser.parse_object_name(false)?;
        // SPLIT AT or UNSPLIT AT, checked by `starts_admin`.
        let unsplit = is_word(&parser.next_token().token, "UNSPLIT");
        parser.next_token();
        let rows = parser.parse_query()?;
        if unsplit {
            AdminStatement::UnsplitAt { table, rows }
        } else {
            AdminStatement::SplitAt { table, rows }
        }
    };
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ParserError::ParserError(format!(
            "Expected: end of statement, found: {}",
            next.token
        ))
        .into());
    }
    Ok(statement)
}

/// The stored table an admin statement names: a catalog table (`kv`
/// included); a system table has no key range to split or list.
pub(crate) fn resolve_table(
    name: &ObjectName,
    operation: &str,
    catalog: &arbor_catalog::Catalog,
) -> Result<arbor_catalog::TableDescriptor, GatewayError> {
    match crate::plan::resolve_relation(name, catalog)? {
        crate::plan::Relation::Table(table) => Ok(table),
        crate::plan::Relation::System(table) => Err(GatewayError::WrongObjectType {
            name: format!("{}.{}", crate::system_tables::SYSTEM_SCHEMA, table.name()),
            operation: operation.to_owned(),
        }),
    }
}

/// Whether `name` is the built-in `kv` table, whose descriptor needs no
/// catalog read.
pub(crate) fn names_kv(name: &ObjectName) -> bool {
    matches!(
        crate::plan::name_parts(name).as_deref(),
        Some([table]) if table == arbor_catalog::KV_TABLE_NAME
    ) || matches!(
        crate::plan::name_parts(name).as_deref(),
        Some([schema, table]) if schema == "public" && table == arbor_catalog::KV_TABLE_NAME
    )
}

/// Rendering helpers shared by the admin statements' rows.
pub(crate) fn int(value: u64) -> crate::value::Value {
    crate::value::Value::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

pub(crate) fn column(name: &str, sql_type: SqlType) -> Column {
    Column::new(name, sql_type)
}
