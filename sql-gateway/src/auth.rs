//! Who may connect: `trust` (anyone) or SCRAM-SHA-256 against users
//! configured at startup, from a users file (`user:password` per line) or
//! one `--user` / `--password` pair.
//!
//! Invariants:
//! - Passwords are never kept or logged: at startup each becomes a SCRAM
//!   verifier (random salt, `StoredKey`, `ServerKey`), as Postgres stores
//!   them in `pg_authid`.
//! - An unknown user goes through the same exchange as a known one, against
//!   a verifier no password matches (its salt derived from the name, so it is
//!   stable across attempts), and fails the same way: 28P01
//!   `password authentication failed for user "x"`. A client cannot tell
//!   which users exist.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use async_trait::async_trait;
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramSecret, SCRAM_ITERATIONS};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};
use ring::hmac;
use ring::rand::SecureRandom;

use crate::error::GatewayError;

/// Users one gateway knows (each costs a PBKDF2 run at startup).
pub(crate) const USERS_MAX: usize = 1_000;
/// Largest users file read.
pub(crate) const USERS_FILE_BYTES_MAX: u64 = 1 << 20;
/// Longest user name, as Postgres' NAMEDATALEN - 1.
pub(crate) const USER_NAME_BYTES_MAX: usize = 63;
/// Longest password accepted in the configuration.
pub(crate) const PASSWORD_BYTES_MAX: usize = 1_024;
/// Salt bytes of each verifier (Postgres uses 16).
const SALT_BYTES: usize = 16;
/// Bytes of a SHA-256 output: the size of `StoredKey` and `ServerKey`.
const SHA256_BYTES: usize = 32;

/// How clients authenticate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMethod {
    /// Every client is accepted as the user it names (`arbor dev`, tests).
    #[default]
    Trust,
    /// SCRAM-SHA-256 against the configured users.
    ScramSha256,
}

impl FromStr for AuthMethod {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "trust" => Ok(AuthMethod::Trust),
            "scram-sha-256" => Ok(AuthMethod::ScramSha256),
            other => Err(format!(
                "unknown authentication method {other:?}: use trust or scram-sha-256"
            )),
        }
    }
}

/// The authentication settings as given on the command line.
#[derive(Clone, Default)]
pub struct AuthConfig {
    pub method: AuthMethod,
    /// A file of `user:password` lines.
    pub users_file: Option<PathBuf>,
    /// One user, with `password`, besides or instead of the file.
    pub user: Option<String>,
    pub password: Option<String>,
}

/// Never prints the password.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AuthConfig")
            .field("method", &self.method)
            .field("users_file", &self.users_file)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One user's SCRAM verifier.
#[derive(Clone)]
struct Verifier {
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl Verifier {
    fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: SCRAM_ITERATIONS,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

/// The users SCRAM checks against, as verifiers.
pub(crate) struct Users {
    verifiers: HashMap<String, Verifier>,
    /// Keys the mock salts of unknown users, so they are stable for this
    /// process but unpredictable.
    mock_salt_key: hmac::Key,
    /// Matches no password: random bytes, not the hash of any key.
    mock_stored_key: Vec<u8>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Users")
            .field("users", &self.verifiers.len())
            .finish_non_exhaustive()
    }
}

impl Users {
    /// Verifiers for `(user, password)` pairs, each with a fresh salt.
    pub(crate) fn new(
        credentials: Vec<(String, String)>,
        random: &dyn SecureRandom,
    ) -> Result<Users, GatewayError> {
        let mut verifiers = HashMap::with_capacity(credentials.len());
        for (user, password) in credentials {
            let salt = random_bytes(random, SALT_BYTES)?;
            let salted_password = gen_salted_password(&password, &salt, SCRAM_ITERATIONS);
            let ScramSecret::Verifier {
                stored_key,
                server_key,
                ..
            } = ScramSecret::verifier_from_salted_password(
                salt.clone(),
                salted_password,
                SCRAM_ITERATIONS,
            )
            else {
                return Err(GatewayError::internal(
                    "pgwire built a SCRAM secret that is not a verifier",
                ));
            };
            verifiers.insert(
                user,
                Verifier {
                    salt,
                    stored_key,
                    server_key,
                },
            );
        }
        let mock_salt_key = hmac::Key::new(hmac::HMAC_SHA256, &random_bytes(random, SHA256_BYTES)?);
        Ok(Users {
            verifiers,
            mock_salt_key,
            mock_stored_key: random_bytes(random, SHA256_BYTES)?,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.verifiers.len()
    }

    /// The verifier to run SCRAM against: the user's, or for an unknown
    /// user one that fails at the proof like a wrong password.
    fn secret_for(&self, user: &str) -> ScramSecret {
        if let Some(verifier) = self.verifiers.get(user) {
            return verifier.secret();
        }
        let tag = hmac::sign(&self.mock_salt_key, user.as_bytes());
        Verifier {
            salt: tag.as_ref()[..SALT_BYTES].to_vec(),
            stored_key: self.mock_stored_key.clone(),
            server_key: self.mock_stored_key.clone(),
        }
        .secret()
    }
}

fn random_bytes(random: &dyn SecureRandom, count: usize) -> Result<Vec<u8>, GatewayError> {
    let mut bytes = vec![0; count];
    random
        .fill(&mut bytes)
        .map_err(|_| GatewayError::internal("the system random generator failed"))?;
    Ok(bytes)
}

#[async_trait]
impl AuthSource for Users {
    /// Unused: SCRAM asks [`AuthSource::get_scram_secret`], and no other
    /// mechanism is configured. Refuses rather than reveal anything.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_owned(),
        ))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        Ok((self.secret_for(login.user().unwrap_or_default()), None))
    }
}

/// The `(user, password)` pairs an [`AuthConfig`] names, checked: SCRAM
/// needs at least one user, trust takes none (so a forgotten `--auth` does
/// not silently serve without passwords).
pub(crate) fn credentials(config: &AuthConfig) -> Result<Vec<(String, String)>, GatewayError> {
    let mut credentials = match &config.users_file {
        Some(path) => read_users_file(path)?,
        None => Vec::new(),
    };
    match (&config.user, &config.password) {
        (Some(user), Some(password)) => {
            check_credential(user, password).map_err(|reason| GatewayError::AuthConfig {
                reason: format!("--user/--password: {reason}"),
            })?;
            if credentials.iter().any(|(known, _)| known == user) {
                return Err(GatewayError::AuthConfig {
                    reason: format!("user \"{user}\" is both in the users file and --user"),
                });
            }
            credentials.push((user.clone(), password.clone()));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(GatewayError::AuthConfig {
                reason: "--user needs --password (or ARBOR_PASSWORD)".into(),
            })
        }
        (None, Some(_)) => {
            return Err(GatewayError::AuthConfig {
                reason: "--password needs --user".into(),
            })
        }
    }
    match config.method {
        AuthMethod::ScramSha256 if credentials.is_empty() => Err(GatewayError::AuthConfig {
            reason: "scram-sha-256 authentication without any user".into(),
        }),
        AuthMethod::Trust if !credentials.is_empty() => Err(GatewayError::AuthConfig {
            reason: "users are configured but --auth is trust, which would ignore their passwords"
                .into(),
        }),
        _ => Ok(credentials),
    }
}

fn read_users_file(path: &Path) -> Result<Vec<(String, String)>, GatewayError> {
    let error = |reason: String| GatewayError::UsersFile {
        path: path.to_owned(),
        line: 0,
        reason,
    };
    let length = std::fs::metadata(path)
        .map_err(|source| error(source.to_string()))?
        .len();
    if length > USERS_FILE_BYTES_MAX {
        return Err(error(format!(
            "{length} bytes is more than the {USERS_FILE_BYTES_MAX} a users file may have"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|source| error(source.to_string()))?;
    parse_users(&text).map_err(|(line, reason)| GatewayError::UsersFile {
        path: path.to_owned(),
        line,
        reason,
    })
}

/// Parses a users file: one `user:password` per line (the password is
/// everything after the first `:`, so it may contain `:`); blank lines and
/// lines starting with `#` are skipped. Errors carry the 1-based line and
/// never the password.
pub(crate) fn parse_users(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut users: Vec<(String, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((user, password)) = line.split_once(':') else {
            return Err((number, "expected user:password".into()));
        };
        check_credential(user, password).map_err(|reason| (number, reason))?;
        if users.iter().any(|(known, _)| known == user) {
            return Err((number, format!("user \"{user}\" appears twice")));
        }
        if users.len() >= USERS_MAX {
            return Err((number, format!("more than {USERS_MAX} users")));
        }
        users.push((user.to_owned(), password.to_owned()));
    }
    Ok(users)
}

fn check_credential(user: &str, password: &str) -> Result<(), String> {
    if user.is_empty() || user.len() > USER_NAME_BYTES_MAX {
        return Err(format!(
            "a user name is 1 to {USER_NAME_BYTES_MAX} bytes long"
        ));
    }
    if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "user name \"{}\" has a space or control character",
            user.escape_debug()
        ));
    }
    if password.is_empty() || password.len() > PASSWORD_BYTES_MAX {
        return Err(format!(
            "the password of \"{user}\" must be 1 to {PASSWORD_BYTES_MAX} bytes long"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn users_file_lines_are_user_colon_password() {
        let users = parse_users("# comment\n\nalice:secret\r\nbob:pa:ss word\n").expect("valid");
        assert_eq!(
            users,
            vec![
                ("alice".to_owned(), "secret".to_owned()),
                ("bob".to_owned(), "pa:ss word".to_owned()),
            ]
        );
    }

    #[test]
    fn users_file_errors_name_the_line_but_not_the_password() {
        assert_eq!(
            parse_users("alice:one\nno-colon-here\n")
                .expect_err("no colon")
                .0,
            2
        );
        let (line, reason) = parse_users("alice:one\nalice:two\n").expect_err("twice");
        assert_eq!(line, 2);
        assert!(!reason.contains("two"), "{reason}");
        assert_eq!(parse_users(":secret").expect_err("no user").0, 1);
        assert_eq!(parse_users("alice:").expect_err("no password").0, 1);
        let too_many: String = (0..=USERS_MAX).map(|n| format!("u{n}:p\n")).collect();
        assert_eq!(
            parse_users(&too_many).expect_err("too many").0,
            USERS_MAX + 1
        );
    }

    #[test]
    fn scram_needs_a_user_and_trust_takes_none() {
        let scram = AuthConfig {
            method: AuthMethod::ScramSha256,
            ..AuthConfig::default()
        };
        assert!(matches!(
            credentials(&scram),
            Err(GatewayError::AuthConfig { .. })
        ));
        let trust_with_user = AuthConfig {
            user: Some("alice".into()),
            password: Some("secret".into()),
            ..AuthConfig::default()
        };
        assert!(matches!(
            credentials(&trust_with_user),
            Err(GatewayError::AuthConfig { .. })
        ));
        let user_without_password = AuthConfig {
            method: AuthMethod::ScramSha256,
            user: Some("alice".into()),
            ..AuthConfig::default()
        };
        assert!(matches!(
            credentials(&user_without_password),
            Err(GatewayError::AuthConfig { .. })
        ));
        let scram_with_user = AuthConfig {
            password: Some("secret".into()),
            ..trust_with_user
        };
        let scram_with_user = AuthConfig {
            method: AuthMethod::ScramSha256,
            ..scram_with_user
        };
        assert_eq!(credentials(&scram_with_user).expect("valid").len(), 1);
        assert!(credentials(&AuthConfig::default())
            .expect("trust")
            .is_empty());
    }

    #[test]
    fn auth_config_debug_hides_the_password() {
        let config = AuthConfig {
            method: AuthMethod::ScramSha256,
            user: Some("alice".into()),
            password: Some("hunter2".into()),
            users_file: None,
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("alice"));
    }

    #[test]
    fn auth_methods_parse_by_their_postgres_names() {
        assert_eq!("trust".parse(), Ok(AuthMethod::Trust));
        assert_eq!("SCRAM-SHA-256".parse(), Ok(AuthMethod::ScramSha256));
        assert!("md5".parse::<AuthMethod>().is_err());
    }

    fn salt_of(secret: ScramSecret) -> Vec<u8> {
        match secret {
            ScramSecret::Verifier { salt, .. } | ScramSecret::SaltedPassword { salt, .. } => salt,
        }
    }

    #[test]
    fn unknown_users_get_a_stable_verifier_that_looks_like_a_real_one() {
        let users = Users::new(
            vec![("alice".into(), "secret".into())],
            &SystemRandom::new(),
        )
        .expect("users");
        let mallory = salt_of(users.secret_for("mallory"));
        assert_eq!(mallory, salt_of(users.secret_for("mallory")));
        assert_ne!(mallory, salt_of(users.secret_for("eve")));
        assert_eq!(mallory.len(), salt_of(users.secret_for("alice")).len());
        let ScramSecret::Verifier {
            stored_key,
            iterations,
            ..
        } = users.secret_for("mallory")
        else {
            panic!("a verifier");
        };
        assert_eq!(stored_key.len(), SHA256_BYTES);
        assert_eq!(iterations, SCRAM_ITERATIONS);
    }

    #[test]
    fn each_user_gets_its_own_salt() {
        let users = Users::new(
            vec![
                ("alice".into(), "same".into()),
                ("bob".into(), "same".into()),
            ],
            &SystemRandom::new(),
        )
        .expect("users");
        assert_eq!(users.len(), 2);
        assert_ne!(
            salt_of(users.secret_for("alice")),
            salt_of(users.secret_for("bob"))
        );
    }
}
