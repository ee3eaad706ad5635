//! The pgwire seams: simple query, extended query (Parse/Bind/Describe/
//! Execute), the query parser, cancel requests, and the registry that hands
//! pgwire the startup seam (`startup`). The only module that turns executor
//! results into wire messages.
//!
//! Invariants: no error path here closes the connection; every statement
//! error becomes an ErrorResponse and the session goes on. A statement
//! cancelled by a CancelRequest is dropped where it waits and answers 57014;
//! inside a transaction block the block is failed, as in Postgres.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    send_execution_response, send_query_response, send_ready_for_query, ExtendedQueryHandler,
    SimpleQueryHandler,
};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, ErrorHandler,
    PgWireConnectionState, PgWireServerHandlers, Type, DEFAULT_NAME,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::Sync as SyncMessage;
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;

use crate::cancel::{GatewayCancel, SessionRegistry};
use crate::error::GatewayError;
use crate::executor::{describe, parameter_count, parse_statements, Executor};
use crate::startup::{rewrite_authentication_error, ArborStartup, Security};
use crate::statement::admin::ParsedStatement;
use crate::statement::QueryResult;
use crate::transaction::Session;
use crate::value::{Column, Row, Value};
use crate::wire_format::{decode_binary, decode_text, pg_type, WireValue};

/// A statement kept by Parse for later Bind/Execute, with its result
/// columns as described against the catalog at Parse time.
#[derive(Debug, Clone)]
pub(crate) struct PreparedStatement {
    statement: ParsedStatement,
    /// One type per `$n`: the client's (from Parse) where it gave one,
    /// else inferred from the statement (`parameter_types`), else TEXT.
    parameter_types: Vec<Type>,
    columns: Vec<Column>,
}

pub(crate) struct ArborQueryParser {
    executor: Arc<Executor>,
}

#[async_trait]
impl QueryParser for ArborQueryParser {
    type Statement = PreparedStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PreparedStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let prepared = self.prepare(sql, types).await;
        if let Err(error) = &prepared {
            crate::dashboard::record_failed_parse(error);
            // As in Postgres, a failed Parse fails the transaction block.
            session_of(client).fail().await;
        }
        prepared
    }

    /// The client's types, else inferred ones; parameters without context
    /// are TEXT (Postgres' `unknown`), so drivers send strings.
    fn get_parameter_types(&self, statement: &PreparedStatement) -> PgWireResult<Vec<Type>> {
        Ok(statement.parameter_types.clone())
    }

    fn get_result_schema(
        &self,
        statement: &PreparedStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(field_infos(&statement.columns, column_format))
    }
}

impl ArborQueryParser {
    async fn prepare(
        &self,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PreparedStatement>> {
        let mut statements = parse_statements(sql)?;
        if statements.len() > 1 {
            return Err(GatewayError::MultipleStatementsInPrepare.into());
        }
        let statement = match statements.pop() {
            None => return Ok(None),
            // Admin statements take no parameters (refused when parsed).
            Some(ParsedStatement::Admin(statement)) => {
                return Ok(Some(PreparedStatement {
                    columns: statement.columns(),
                    statement: ParsedStatement::Admin(statement),
                    parameter_types: Vec::new(),
                }))
            }
            Some(ParsedStatement::Sql(statement)) => statement,
        };
        let parameter_count = parameter_count(sql);
        let catalog = self.executor.catalog_for(&statement).await?;
        let columns = describe(&statement, parameter_count, &catalog)?;
        let inferred = crate::parameter_types::infer(&statement, parameter_count, &catalog);
        let parameter_types = inferred
            .into_iter()
            .enumerate()
            .map(|(index, inferred)| {
                let declared = types
                    .get(index)
                    .cloned()
                    .flatten()
                    .filter(|declared| declared.oid() != 0 && *declared != Type::UNKNOWN);
                declared.unwrap_or_else(|| inferred.map_or(Type::TEXT, pg_type))
            })
            .collect();
        Ok(Some(PreparedStatement {
            statement: ParsedStatement::Sql(statement),
            parameter_types,
            columns,
        }))
    }
}

pub(crate) struct SqlHandler {
    executor: Arc<Executor>,
    query_parser: Arc<ArborQueryParser>,
}

impl SqlHandler {
    pub(crate) fn new(executor: Executor) -> Self {
        let executor = Arc::new(executor);
        SqlHandler {
            query_parser: Arc::new(ArborQueryParser {
                executor: executor.clone(),
            }),
            executor,
        }
    }
}

/// The connection's transaction state, created on first use.
pub(crate) fn session_of<C: ClientInfo + ?Sized>(client: &C) -> Arc<Session> {
    client
        .session_extensions()
        .get_or_insert_with(Session::default)
}

/// ParameterStatus for every reported setting (application_name,
/// client_encoding, DateStyle, TimeZone, ...) whose value changed since the
/// client was last told: by SET, RESET, set_config, or a ROLLBACK undoing
/// one. Postgres (since 14) sends these just before ReadyForQuery, after
/// the statement's CommandComplete; drivers update their view then.
async fn send_changed_parameters<C>(client: &mut C) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for (name, value) in session_of(client).take_changed_reports() {
        client
            .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                name.to_owned(),
                value,
            )))
            .await?;
    }
    Ok(())
}

/// Runs `work` unless a CancelRequest for this session arrives first; then
/// `work` is dropped at the point where it waits (a row lock, a region
/// call) and the caller answers 57014. pgwire registered the session's
/// cancel handle at startup (`startup`). Only for the simple protocol: our
/// `on_query` replaces pgwire's, while pgwire's own Execute already races
/// `ExtendedQueryHandler::do_query` against the same handle.
async fn cancellable<C, T>(client: &C, work: impl Future<Output = T>) -> Result<T, GatewayError>
where
    C: ClientInfo + ?Sized,
{
    let Some(handle) = client.session_extensions().get::<Arc<ConnectionHandle>>() else {
        return Ok(work.await);
    };
    // Replaces the previous statement's receiver, so a cancel that arrived
    // between statements cancels nothing.
    let cancelled = handle.start_query().await;
    tokio::pin!(work);
    tokio::select! {
        biased;
        output = &mut work => return Ok(output),
        // `Err` means the handle was replaced or dropped: no cancel then.
        Ok(()) = cancelled => {}
    }
    // A cancel that raced the start of a COMMIT is ignored like one that
    // arrived during it (see `cancel`): the commit finishes and answers.
    if session_of(client).committing() {
        tracing::info!(peer = %client.socket_addr(), "cancel ignored: the session is committing");
        return Ok(work.await);
    }
    tracing::debug!(peer = %client.socket_addr(), "statement cancelled by the client");
    Err(GatewayError::QueryCanceled)
}

#[async_trait]
impl SimpleQueryHandler for SqlHandler {
    /// pgwire's own `on_query` derives the ReadyForQuery status from the
    /// responses, which cannot express ROLLBACK TO SAVEPOINT leaving a
    /// failed block, nor a failed COMMIT ending one; this one sends the
    /// session's status.
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        if query.query.chars().all(|c| c == ';' || c.is_whitespace()) {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        } else {
            for response in SimpleQueryHandler::do_query(self, client, &query.query).await? {
                match response {
                    Response::Query(results) => send_query_response(client, results, true).await?,
                    Response::Execution(tag)
                    | Response::TransactionStart(tag)
                    | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
                    Response::Error(error) => {
                        client
                            .feed(PgWireBackendMessage::ErrorResponse((*error).into()))
                            .await?
                    }
                    Response::EmptyQuery => {
                        client
                            .feed(PgWireBackendMessage::EmptyQueryResponse(
                                EmptyQueryResponse::new(),
                            ))
                            .await?
                    }
                    Response::CopyIn(_) | Response::CopyOut(_) | Response::CopyBoth(_) => {
                        return Err(GatewayError::unsupported("COPY").into())
                    }
                }
            }
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        send_changed_parameters(client).await?;
        let status = session_of(client).status().await;
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client);
        let started = Instant::now();
        let results = match cancellable(client, self.executor.execute_sql(&session, query)).await {
            Ok(results) => results,
            Err(cancelled) => {
                // The statement stopped part way: nothing of it is kept
                // outside a block; inside one, the block fails.
                session.fail().await;
                vec![Err(cancelled)]
            }
        };
        crate::dashboard::record_simple_query(query, &results, started.elapsed());
        Ok(results
            .into_iter()
            .map(|result| match result {
                Ok(result) => to_response(result, None),
                Err(error) => {
                    tracing::debug!(%error, sqlstate = error.sqlstate(), "statement failed");
                    Response::Error(Box::new(error.to_error_info()))
                }
            })
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for SqlHandler {
    type Statement = PreparedStatement;
    type QueryParser = ArborQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.query_parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = session_of(client);
        let params = match portal_parameters(portal) {
            Ok(params) => params,
            Err(error) => {
                session.fail().await;
                return Err(error);
            }
        };
        let statement = &portal.statement.statement.statement;
        let started = Instant::now();
        // pgwire's Execute races this against the session's CancelRequest
        // and drops it on cancel; `GatewayErrors` then fails the block.
        let result = self
            .executor
            .execute_parsed(&session, statement, &params)
            .await;
        crate::dashboard::record_statement(statement, &result, started.elapsed());
        let result = result?;
        Ok(to_response(result, Some(&portal.result_column_format)))
    }

    /// ReadyForQuery after Sync carries the session's status (see
    /// `on_query` for why pgwire's own bookkeeping is not enough).
    async fn on_sync<C>(&self, client: &mut C, _message: SyncMessage) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        send_changed_parameters(client).await?;
        let status = session_of(client).status().await;
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }
}

/// pgwire's error seam, called before any error is sent.
pub(crate) struct GatewayErrors;

impl ErrorHandler for GatewayErrors {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        rewrite_authentication_error(client, error);
        if matches!(error, PgWireError::QueryCanceled) {
            // pgwire dropped a cancelled Execute part way: fail the block as
            // Postgres does. The dropped statement released the session
            // lock, and this session runs nothing else meanwhile.
            match session_of(client).state.try_lock() {
                Ok(mut state) => state.fail(),
                Err(_) => tracing::warn!("a cancelled statement's session was busy"),
            }
            *error = GatewayError::QueryCanceled.into();
        }
    }
}

/// The registry pgwire asks for each seam.
pub(crate) struct GatewayHandlers {
    handler: Arc<SqlHandler>,
    startup: Arc<ArborStartup>,
    /// Finds a session by the (pid, secret key) of a CancelRequest.
    cancel: Arc<GatewayCancel>,
    errors: Arc<GatewayErrors>,
}

impl GatewayHandlers {
    pub(crate) fn new(executor: Executor, security: &Security) -> Self {
        let connections = Arc::new(ConnectionManager::new());
        let sessions = Arc::new(SessionRegistry::default());
        GatewayHandlers {
            handler: Arc::new(SqlHandler::new(executor)),
            startup: Arc::new(ArborStartup::new(
                security,
                connections.clone(),
                sessions.clone(),
            )),
            cancel: Arc::new(GatewayCancel::new(connections, sessions)),
            errors: Arc::new(GatewayErrors),
        }
    }
}

impl PgWireServerHandlers for GatewayHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.handler.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.handler.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        self.errors.clone()
    }
}

/// Bound parameters as values: binary ones decoded by their declared type,
/// text ones typed when declared with a non-text type, else untyped text.
fn portal_parameters(portal: &Portal<PreparedStatement>) -> PgWireResult<Vec<Value>> {
    (0..portal.parameter_len())
        .map(|index| {
            let Some(Some(bytes)) = portal.parameters.get(index) else {
                return Ok(Value::Null);
            };
            let declared = portal
                .statement
                .parameter_types
                .get(index)
                .cloned()
                .flatten()
                .filter(|declared| declared.oid() != 0 && *declared != Type::UNKNOWN)
                .or_else(|| {
                    portal
                        .statement
                        .statement
                        .parameter_types
                        .get(index)
                        .cloned()
                });
            if portal.parameter_format.is_binary(index) {
                return Ok(decode_binary(&declared.unwrap_or(Type::TEXT), bytes)?);
            }
            let text = std::str::from_utf8(bytes).map_err(|_| {
                GatewayError::InvalidTextRepresentation {
                    type_name: "text".to_owned(),
                    value: "<invalid UTF-8>".to_owned(),
                }
            })?;
            Ok(decode_text(declared.as_ref(), text)?)
        })
        .collect()
}

fn field_infos(columns: &[Column], format: Option<&Format>) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let field_format = format.map_or(FieldFormat::Text, |format| format.format_for(index));
            FieldInfo::new(
                column.name.clone(),
                None,
                None,
                pg_type(column.sql_type),
                field_format,
            )
        })
        .collect()
}

pub(crate) fn to_response(result: QueryResult, format: Option<&Format>) -> Response {
    match result {
        QueryResult::Command {
            tag: "INSERT",
            rows,
        } => Response::Execution(Tag::new("INSERT").with_oid(0).with_rows(rows.unwrap_or(0))),
        QueryResult::Command {
            tag,
            rows: Some(rows),
        } => Response::Execution(Tag::new(tag).with_rows(rows)),
        QueryResult::Command { tag, rows: None } => Response::Execution(Tag::new(tag)),
        QueryResult::TransactionStart => Response::TransactionStart(Tag::new("BEGIN")),
        QueryResult::TransactionEnd { tag } => Response::TransactionEnd(Tag::new(tag)),
        QueryResult::Rows { columns, rows } => rows_response(&columns, &rows, format, None),
        QueryResult::Returning { tag, columns, rows } => {
            // pgwire appends the row count; INSERT's tag carries an OID first.
            let tag = if tag == "INSERT" { "INSERT 0" } else { tag };
            rows_response(&columns, &rows, format, Some(tag))
        }
    }
}

fn rows_response(
    columns: &[Column],
    rows: &[Row],
    format: Option<&Format>,
    tag: Option<&str>,
) -> Response {
    let schema = Arc::new(field_infos(columns, format));
    let encoded: Vec<PgWireResult<DataRow>> = rows
        .iter()
        .map(|row| encode_row(&schema, columns, row))
        .collect();
    let mut response = QueryResponse::new(schema, stream::iter(encoded));
    if let Some(tag) = tag {
        response.set_command_tag(tag);
    }
    Response::Query(response)
}

fn encode_row(
    schema: &Arc<Vec<FieldInfo>>,
    columns: &[Column],
    row: &Row,
) -> PgWireResult<DataRow> {
    let mut encoder = DataRowEncoder::new(schema.clone());
    for (value, column) in row.iter().zip(columns) {
        encoder.encode_field(&WireValue {
            value,
            sql_type: column.sql_type,
        })?;
    }
    Ok(encoder.take_row())
}
