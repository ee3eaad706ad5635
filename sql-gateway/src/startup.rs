//! The connection phase of a Postgres session: whether it must be
//! encrypted, how it authenticates (trust or SCRAM-SHA-256), the
//! ParameterStatus set it is told, and the cancel key (BackendKeyData)
//! registered so a CancelRequest can find its running statement.
//!
//! Invariants:
//! - The ParameterStatus values are the ones `SHOW` answers (the
//!   session's `settings::Settings`, started here from the startup
//!   parameters and the login user), so a driver sees one server.
//! - Every session that finished startup is registered in the
//!   [`ConnectionManager`] under its (pid, secret key) until it ends.
//! - Authentication failures read as Postgres': FATAL 28P01
//!   `password authentication failed for user "x"`, the same for a wrong
//!   password and an unknown user.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::driver::{AuthDriver, AuthOutcome};
use pgwire::api::auth::mechanism::{AuthMechanism, AuthMechanismFactory, AuthState};
use pgwire::api::auth::sasl::scram::{ScramAuth, SCRAM_ITERATIONS};
use pgwire::api::auth::{
    protocol_negotiation, save_startup_parameters_to_metadata, ServerParameterProvider,
    StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;

use crate::auth::{AuthConfig, Users};
use crate::cancel::SessionRegistry;
use crate::error::GatewayError;
use crate::handler::session_of;
use crate::settings::Settings;
use crate::tls::TlsConfig;

/// TLS and authentication as loaded at startup.
pub(crate) struct Security {
    pub(crate) tls_acceptor: Option<TlsAcceptor>,
    tls_required: bool,
    /// `None` is trust.
    scram: Option<ScramAuth>,
}

impl Security {
    /// No TLS, trust authentication.
    #[cfg(test)]
    pub(crate) fn trust() -> Security {
        Security {
            tls_acceptor: None,
            tls_required: false,
            scram: None,
        }
    }

    /// Reads the certificate, key and users; fails (naming the file) on
    /// anything unusable, so a misconfigured gateway does not start.
    pub(crate) fn load(
        tls: Option<&TlsConfig>,
        auth: &AuthConfig,
    ) -> Result<Security, GatewayError> {
        let tls_loaded = tls.map(crate::tls::load).transpose()?;
        let credentials = crate::auth::credentials(auth)?;
        let scram = if credentials.is_empty() {
            None
        } else {
            let users = Users::new(credentials, &ring::rand::SystemRandom::new())?;
            tracing::info!(users = users.len(), "SCRAM-SHA-256 authentication");
            let mut scram = ScramAuth::new(Arc::new(users));
            if let Some(loaded) = &tls_loaded {
                // Channel binding (SCRAM-SHA-256-PLUS) ties the password
                // exchange to this certificate, so a man in the middle that
                // terminates TLS cannot relay it. Optional: without it SCRAM
                // still works.
                if let Err(error) = scram.configure_certificate(&loaded.cert_pem) {
                    tracing::warn!(%error, "SCRAM channel binding is off for this certificate");
                }
            }
            Some(scram)
        };
        Ok(Security {
            tls_required: tls.is_some_and(|tls| tls.required),
            tls_acceptor: tls_loaded.map(|loaded| loaded.acceptor),
            scram,
        })
    }
}

/// pgwire's startup seam: protocol negotiation, the encryption check,
/// authentication, then AuthenticationOk, ParameterStatus, BackendKeyData
/// and ReadyForQuery (pgwire's [`AuthDriver`]).
pub(crate) struct ArborStartup {
    driver: AuthDriver<Arc<ArborParameters>>,
    scram: Option<ScramAuth>,
    tls_required: bool,
    sessions: Arc<SessionRegistry>,
}

impl ArborStartup {
    pub(crate) fn new(
        security: &Security,
        connections: Arc<ConnectionManager>,
        sessions: Arc<SessionRegistry>,
    ) -> ArborStartup {
        ArborStartup {
            driver: AuthDriver::new(Arc::new(ArborParameters)).with_connection_manager(connections),
            scram: security.scram.clone(),
            tls_required: security.tls_required,
            sessions,
        }
    }

    fn mechanism(&self) -> Box<dyn AuthMechanism> {
        match &self.scram {
            Some(scram) => scram.create(),
            None => Box::new(Trust),
        }
    }

    async fn finish<C>(&self, client: &mut C, outcome: AuthOutcome) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match outcome {
            AuthOutcome::InProgress => Ok(()),
            AuthOutcome::Authenticated { final_message, .. } => {
                self.driver
                    .complete_authentication(client, final_message)
                    .await?;
                // Known by its cancel key from now on (see `cancel`).
                let (pid, secret_key) = client.pid_and_secret_key();
                self.sessions
                    .register((pid, secret_key.to_bytes()), &session_of(client));
                Ok(())
            }
        }
    }
}

#[async_trait]
impl StartupHandler for ArborStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.tls_required && !client.is_secure() {
                    return Err(fatal(GatewayError::EncryptionRequired {
                        host: client.socket_addr().ip().to_string(),
                        user: startup_user(client),
                    }));
                }
                let outcome = self
                    .driver
                    .begin_authentication(client, self.mechanism())
                    .await?;
                self.finish(client, outcome).await
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let outcome = self.driver.advance_authentication(client, message).await?;
                self.finish(client, outcome).await
            }
            _ => Ok(()),
        }
    }
}

/// Trust: authenticated as soon as it starts.
struct Trust;

#[async_trait]
impl AuthMechanism for Trust {
    async fn begin(&mut self, _client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<AuthState> {
        Ok(AuthState::Ok {
            final_message: None,
            identity: None,
        })
    }

    async fn next(
        &mut self,
        _client: &(dyn ClientInfo + Send + Sync),
        _message: PasswordMessageFamily,
    ) -> PgWireResult<AuthState> {
        Err(PgWireError::NoAuthenticationInProgress)
    }
}

fn startup_user<C: ClientInfo + ?Sized>(client: &C) -> String {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

/// A connection-phase error: FATAL, so pgwire closes the connection.
fn fatal(error: GatewayError) -> PgWireError {
    let mut info: ErrorInfo = error.to_error_info();
    info.severity = "FATAL".to_owned();
    PgWireError::UserError(Box::new(info))
}

/// Rewrites pgwire's own authentication failure into Postgres' words for
/// the user the client logged in as (the SCRAM message's user name is empty
/// for libpq, which Postgres ignores too).
pub(crate) fn rewrite_authentication_error<C: ClientInfo + ?Sized>(
    client: &C,
    error: &mut PgWireError,
) {
    if matches!(error, PgWireError::InvalidPassword(_)) {
        let user = startup_user(client);
        tracing::info!(%user, peer = %client.socket_addr(), "password authentication failed");
        *error = fatal(GatewayError::PasswordAuthenticationFailed { user });
    }
}

/// The ParameterStatus messages after authentication. This is also where
/// the session's settings start: the defaults, the startup parameters the
/// client sent, and the login user (`session_authorization`).
pub(crate) struct ArborParameters;

impl ServerParameterProvider for ArborParameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let metadata = client.metadata();
        let user = metadata.get(METADATA_USER).map_or("", String::as_str);
        let settings = Settings::for_login(
            user,
            metadata
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        let reported = session_of(client).start(settings);
        Some(reported_parameters(reported).into_iter().collect())
    }
}

/// The ParameterStatus set for a session (pure): its reported settings
/// (Postgres' `GUC_REPORT` ones, the values `SHOW` answers) and the
/// server facts Postgres 16 reports that are not settings here.
pub(crate) fn reported_parameters(
    reported_settings: Vec<(&'static str, String)>,
) -> Vec<(String, String)> {
    let mut parameters: Vec<(String, String)> = reported_settings
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    parameters.extend([
        ("in_hot_standby".to_owned(), "off".to_owned()),
        ("scram_iterations".to_owned(), SCRAM_ITERATIONS.to_string()),
    ]);
    parameters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_parameters_match_what_show_answers() {
        let settings = Settings::for_login(
            "alice",
            [("application_name", "psql"), ("client_encoding", "unicode")],
        );
        let parameters: HashMap<String, String> = reported_parameters(settings.reported())
            .into_iter()
            .collect();
        for setting in crate::settings::KNOWN_SETTINGS
            .iter()
            .filter(|setting| setting.reported)
        {
            assert_eq!(
                parameters.get(setting.name),
                settings.get(setting.name).as_ref(),
                "{} is reported as SHOW answers",
                setting.name
            );
        }
        assert_eq!(parameters["server_version"], "16.6");
        assert_eq!(parameters["client_encoding"], "UTF8");
        assert_eq!(parameters["server_encoding"], "UTF8");
        assert_eq!(parameters["DateStyle"], "ISO, MDY");
        assert_eq!(parameters["TimeZone"], "UTC");
        assert_eq!(parameters["integer_datetimes"], "on");
        assert_eq!(parameters["standard_conforming_strings"], "on");
        assert_eq!(parameters["default_transaction_read_only"], "off");
        assert_eq!(parameters["session_authorization"], "alice");
        assert_eq!(parameters["application_name"], "psql");
    }

    #[test]
    fn connection_phase_errors_are_fatal_with_postgres_words() {
        let error = fatal(GatewayError::PasswordAuthenticationFailed {
            user: "alice".into(),
        });
        let info: ErrorInfo = error.into();
        assert_eq!(info.severity, "FATAL");
        assert_eq!(info.code, "28P01");
        assert_eq!(
            info.message,
            "password authentication failed for user \"alice\""
        );
    }
}
