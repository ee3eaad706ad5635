//! Per-session configuration settings (Postgres' GUCs): the table of the
//! settings Arbor knows with their defaults, the checks on values Arbor's
//! behaviour depends on, and [`Settings`], one session's values.
//!
//! Pure: no IO, no clock. The executor applies SET / RESET / SHOW here and
//! snapshots a session's settings at BEGIN so ROLLBACK can restore them;
//! `handler` reports changed `GUC_REPORT` settings as ParameterStatus.
//!
//! Invariants:
//! - A value is stored only after its check passed, so SHOW never answers
//!   something Arbor does not do: timestamps render in UTC, so `TimeZone`
//!   is a UTC equivalent; the encoding is UTF8; SERIALIZABLE is refused
//!   (every level below it runs as snapshot isolation, which Postgres calls
//!   REPEATABLE READ, and SHOW answers the level the client set).
//! - A session holds at most [`SESSION_CUSTOM_SETTINGS_MAX`] custom
//!   (`prefix.name`) settings and no value longer than
//!   [`SETTING_VALUE_BYTES_MAX`] bytes.
//! - Settings that are accepted but not enforced (`statement_timeout`,
//!   `lock_timeout`, `idle_in_transaction_session_timeout`, `search_path`,
//!   `lc_*`, `client_min_messages`) are stored and shown so drivers that
//!   send them at connect keep working.

use std::collections::BTreeMap;

use crate::error::GatewayError;

/// Longest value a setting may hold (drivers send short ones; this bounds
/// what a session keeps in memory).
pub(crate) const SETTING_VALUE_BYTES_MAX: usize = 4096;
/// Custom `prefix.name` settings one session may hold (the known ones are a
/// fixed table).
pub(crate) const SESSION_CUSTOM_SETTINGS_MAX: usize = 64;

/// How a value is checked (and normalised) before it is stored.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Stored as given: Arbor does not depend on it.
    Any,
    /// The gateway converts nothing: only UTF8 and its aliases.
    Utf8Encoding,
    /// Every level below SERIALIZABLE runs as snapshot isolation.
    Isolation,
    /// Timestamps are rendered in UTC: only UTC equivalents.
    TimeZone,
    /// Dates are rendered in ISO style.
    DateStyle,
    /// Only this exact (case-insensitive) value is honoured.
    Only(&'static str),
    /// A boolean, and only this value of it is honoured.
    BoolOnly(bool),
    /// An integer within bounds (inclusive).
    Integer { min: i64, max: i64 },
}

/// One setting Arbor knows.
#[derive(Debug)]
pub(crate) struct KnownSetting {
    /// The canonical spelling (SHOW's column, SHOW ALL's rows).
    pub(crate) name: &'static str,
    default: &'static str,
    pub(crate) description: &'static str,
    check: Check,
    /// Only the server sets it (Postgres: 55P02 on SET).
    read_only: bool,
    /// Postgres reports it (`GUC_REPORT`) as ParameterStatus under its
    /// canonical name, at startup and whenever it changes.
    pub(crate) reported: bool,
}

const fn setting(
    name: &'static str,
    default: &'static str,
    description: &'static str,
    check: Check,
) -> KnownSetting {
    KnownSetting {
        name,
        default,
        description,
        check,
        read_only: false,
        reported: false,
    }
}

const fn reported(setting: KnownSetting) -> KnownSetting {
    KnownSetting {
        reported: true,
        ..setting
    }
}

const fn read_only(setting: KnownSetting) -> KnownSetting {
    KnownSetting {
        read_only: true,
        ..setting
    }
}

/// The name `session_authorization`'s default is replaced with the login
/// user's; `transaction_isolation` is per transaction (see [`Settings`]).
const SESSION_AUTHORIZATION: &str = "session_authorization";
const TRANSACTION_ISOLATION: &str = "transaction_isolation";
const DEFAULT_TRANSACTION_ISOLATION: &str = "default_transaction_isolation";

/// Every setting SET, SHOW and RESET know, sorted by name (SHOW ALL's
/// order). Values describe what Arbor actually does.
pub(crate) const KNOWN_SETTINGS: [KnownSetting; 34] = [
    reported(setting(
        "application_name",
        "",
        "Sets the application name to be reported in statistics and logs.",
        Check::Any,
    )),
    setting(
        "bytea_output",
        "hex",
        "Sets the output format for bytea.",
        Check::Only("hex"),
    ),
    reported(setting(
        "client_encoding",
        "UTF8",
        "Sets the client's character set encoding.",
        Check::Utf8Encoding,
    )),
    setting(
        "client_min_messages",
        "notice",
        "Sets the message levels that are sent to the client.",
        Check::Any,
    ),
    reported(setting(
        "DateStyle",
        "ISO, MDY",
        "Sets the display format for date and time values.",
        Check::DateStyle,
    )),
    setting(
        "default_transaction_isolation",
        "repeatable read",
        "Sets the transaction isolation level of each new transaction.",
        Check::Isolation,
    ),
    reported(setting(
        "default_transaction_read_only",
        "off",
        "Sets the default read-only status of new transactions.",
        Check::BoolOnly(false),
    )),
    setting(
        "extra_float_digits",
        "1",
        "Sets the number of digits displayed for floating-point values.",
        Check::Integer { min: -15, max: 3 },
    ),
    setting(
        "idle_in_transaction_session_timeout",
        "0",
        "Sets the maximum allowed idle time between queries, when in a transaction.",
        Check::Any,
    ),
    reported(read_only(setting(
        "integer_datetimes",
        "on",
        "Shows whether datetimes are integer based.",
        Check::Any,
    ))),
    reported(setting(
        "IntervalStyle",
        "postgres",
        "Sets the display format for interval values.",
        Check::Only("postgres"),
    )),
    reported(read_only(setting(
        "is_superuser",
        "on",
        "Shows whether the current user is a superuser.",
        Check::Any,
    ))),
    read_only(setting(
        "lc_collate",
        "C",
        "Shows the collation order locale.",
        Check::Any,
    )),
    read_only(setting(
        "lc_ctype",
        "C",
        "Shows the character classification and case conversion locale.",
        Check::Any,
    )),
    setting(
        "lc_messages",
        "C",
        "Sets the language in which messages are displayed.",
        Check::Any,
    ),
    setting(
        "lc_monetary",
        "C",
        "Sets the locale for formatting monetary amounts.",
        Check::Any,
    ),
    setting(
        "lc_numeric",
        "C",
        "Sets the locale for formatting numbers.",
        Check::Any,
    ),
    setting(
        "lc_time",
        "C",
        "Sets the locale for formatting date and time values.",
        Check::Any,
    ),
    setting(
        "lock_timeout",
        "0",
        "Sets the maximum allowed duration of any wait for a lock.",
        Check::Any,
    ),
    read_only(setting(
        "max_identifier_length",
        "63",
        "Shows the maximum identifier length.",
        Check::Any,
    )),
    setting(
        "search_path",
        "public",
        "Sets the schema search order for names that are not schema-qualified.",
        Check::Any,
    ),
    reported(read_only(setting(
        "server_encoding",
        "UTF8",
        "Shows the server (database) character set encoding.",
        Check::Any,
    ))),
    reported(read_only(setting(
        "server_version",
        "16.6",
        "Shows the server version.",
        Check::Any,
    ))),
    read_only(setting(
        "server_version_num",
        "160006",
        "Shows the server version as an integer.",
        Check::Any,
    )),
    reported(read_only(setting(
        SESSION_AUTHORIZATION,
        "",
        "Sets the session user name.",
        Check::Any,
    ))),
    reported(setting(
        "standard_conforming_strings",
        "on",
        "Causes '...' strings to treat backslashes literally.",
        Check::BoolOnly(true),
    )),
    setting(
        "statement_timeout",
        "0",
        "Sets the maximum allowed duration of any statement.",
        Check::Any,
    ),
    setting(
        "synchronous_commit",
        "on",
        "Sets the current transaction's synchronization level.",
        Check::Any,
    ),
    reported(setting(
        "TimeZone",
        "UTC",
        "Sets the time zone for displaying and interpreting time stamps.",
        Check::TimeZone,
    )),
    setting(
        "timezone_abbreviations",
        "Default",
        "Selects a file of time zone abbreviations.",
        Check::Any,
    ),
    setting(
        TRANSACTION_ISOLATION,
        "repeatable read",
        "Sets the current transaction's isolation level.",
        Check::Isolation,
    ),
    setting(
        "transaction_read_only",
        "off",
        "Sets the current transaction's read-only status.",
        Check::BoolOnly(false),
    ),
    setting(
        "xmlbinary",
        "base64",
        "Sets how binary values are to be encoded in XML.",
        Check::Any,
    ),
    setting(
        "xmloption",
        "content",
        "Sets whether XML data in implicit parsing and serialization operations is to be considered as documents or content fragments.",
        Check::Any,
    ),
];

/// The known setting named `name` (case-insensitive).
pub(crate) fn known(name: &str) -> Option<&'static KnownSetting> {
    KNOWN_SETTINGS
        .iter()
        .find(|setting| setting.name.eq_ignore_ascii_case(name))
}

/// The default of a known setting, as a fresh session without startup
/// parameters sees it (also what catalog relations without a session show).
pub(crate) fn default_value(name: &str) -> Option<&'static str> {
    known(name).map(|setting| setting.default)
}

/// One session's settings: values set at startup, by SET (session-level),
/// and by SET LOCAL (until the transaction block ends), looked up in that
/// order of precedence reversed (LOCAL wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Startup parameters (what RESET returns to), by lowercase name.
    startup: BTreeMap<String, String>,
    /// SET / SET SESSION values, by lowercase name.
    session: BTreeMap<String, String>,
    /// SET LOCAL values (and `transaction_isolation`), dropped when the
    /// transaction block ends.
    local: BTreeMap<String, String>,
}

/// Where a SET applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Session,
    /// Only until the end of the current transaction block.
    Local,
}

impl Settings {
    /// A session of `user` that sent `parameters` at startup. A startup
    /// value that fails its check is ignored (the default stays) rather
    /// than refusing the connection: JDBC sends the JVM's time zone, and
    /// the session should still work, in UTC.
    pub(crate) fn for_login<'a>(
        user: &str,
        parameters: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Settings {
        let mut settings = Settings::default();
        settings
            .startup
            .insert(SESSION_AUTHORIZATION.to_owned(), user.to_owned());
        for (name, value) in parameters {
            let Some(known) = known(name) else { continue };
            if known.read_only {
                continue;
            }
            match checked(known, value) {
                Ok(value) => {
                    settings.startup.insert(key(known.name), value);
                }
                Err(error) => {
                    tracing::info!(%error, "startup parameter ignored");
                }
            }
        }
        settings
    }

    /// The current value of `name`: LOCAL, then session, then startup, then
    /// the default. `None` for a name Arbor does not know and no SET made.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        let name = key(name);
        if let Some(value) = self.local.get(&name).or_else(|| self.session.get(&name)) {
            return Some(value.clone());
        }
        if name == TRANSACTION_ISOLATION {
            // A transaction runs at the session's default unless it set one.
            return self.get(DEFAULT_TRANSACTION_ISOLATION);
        }
        self.startup
            .get(&name)
            .cloned()
            .or_else(|| default_value(&name).map(str::to_owned))
    }

    /// The login user (`session_authorization`, `current_user`).
    pub(crate) fn user(&self) -> String {
        self.get(SESSION_AUTHORIZATION).unwrap_or_default()
    }

    /// SET `name` to `value` (`None`: DEFAULT). `in_block` says whether a
    /// transaction block is open: outside one, SET LOCAL (and SET
    /// transaction_isolation) does nothing, as in Postgres (which warns).
    pub(crate) fn set(
        &mut self,
        name: &str,
        value: Option<&str>,
        scope: Scope,
        in_block: bool,
    ) -> Result<(), GatewayError> {
        let (name, value) = match known(name) {
            Some(known) => {
                if known.read_only {
                    return Err(GatewayError::CantChangeParameter {
                        name: known.name.to_owned(),
                    });
                }
                let value = value.map(|value| checked(known, value)).transpose()?;
                (key(known.name), value)
            }
            None => {
                let name = custom_name(name)?;
                let value = value
                    .map(|value| checked_length(&name, value))
                    .transpose()?;
                (name, value)
            }
        };
        let local = scope == Scope::Local || name == TRANSACTION_ISOLATION;
        if local && !in_block {
            return Ok(());
        }
        if !self.has(&name) && value.is_some() {
            self.check_custom_count(&name)?;
        }
        let target = if local {
            &mut self.local
        } else {
            // A session-level SET outlives the block's LOCAL value.
            self.local.remove(&name);
            &mut self.session
        };
        match value {
            Some(value) => target.insert(name, value),
            // DEFAULT: back to the startup value (or the default).
            None => target.remove(&name),
        };
        Ok(())
    }

    /// RESET `name` (same as SET name TO DEFAULT).
    pub(crate) fn reset(&mut self, name: &str, in_block: bool) -> Result<(), GatewayError> {
        self.set(name, None, Scope::Session, in_block)
    }

    /// RESET ALL: every value set since startup is dropped.
    pub(crate) fn reset_all(&mut self) {
        self.session.clear();
        self.local.clear();
    }

    /// The transaction block committed: LOCAL values end, SETs stay.
    pub(crate) fn end_block(&mut self) {
        self.local.clear();
    }

    /// SHOW ALL: (name, value, description) of every known setting, then
    /// the custom ones this session set, by name.
    pub(crate) fn all(&self) -> Vec<(String, String, String)> {
        let mut rows: Vec<(String, String, String)> = KNOWN_SETTINGS
            .iter()
            .map(|setting| {
                (
                    setting.name.to_owned(),
                    self.get(setting.name).unwrap_or_default(),
                    setting.description.to_owned(),
                )
            })
            .collect();
        let custom: std::collections::BTreeSet<&String> = self
            .session
            .keys()
            .chain(self.local.keys())
            .filter(|name| known(name).is_none())
            .collect();
        rows.extend(custom.into_iter().map(|name| {
            (
                name.clone(),
                self.get(name).unwrap_or_default(),
                String::new(),
            )
        }));
        rows
    }

    /// The settings Postgres reports as ParameterStatus, with their values.
    pub(crate) fn reported(&self) -> Vec<(&'static str, String)> {
        KNOWN_SETTINGS
            .iter()
            .filter(|setting| setting.reported)
            .map(|setting| (setting.name, self.get(setting.name).unwrap_or_default()))
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.session.contains_key(name) || self.local.contains_key(name)
    }

    fn check_custom_count(&self, name: &str) -> Result<(), GatewayError> {
        if known(name).is_some() {
            return Ok(());
        }
        let custom: std::collections::BTreeSet<&String> = self
            .session
            .keys()
            .chain(self.local.keys())
            .filter(|name| known(name).is_none())
            .collect();
        if custom.len() >= SESSION_CUSTOM_SETTINGS_MAX {
            return Err(GatewayError::ProgramLimitExceeded {
                what: format!("custom setting \"{name}\""),
                limit: SESSION_CUSTOM_SETTINGS_MAX,
            });
        }
        Ok(())
    }
}

/// Settings are stored under lowercase names: Postgres matches them
/// case-insensitively.
fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// A name Arbor does not know is accepted only as a custom `prefix.name`
/// (Postgres' placeholder variables, which extensions and applications
/// use); anything else is 42704 as in Postgres.
fn custom_name(name: &str) -> Result<String, GatewayError> {
    let name = key(name);
    let valid = name.split('.').count() == 2
        && name
            .split('.')
            .all(|part| !part.is_empty() && part.len() <= SETTING_VALUE_BYTES_MAX);
    if valid {
        Ok(name)
    } else {
        Err(GatewayError::UndefinedParameter { name })
    }
}

fn checked_length(name: &str, value: &str) -> Result<String, GatewayError> {
    if value.len() > SETTING_VALUE_BYTES_MAX {
        return Err(GatewayError::ProgramLimitExceeded {
            what: format!("a value of {} bytes for setting \"{name}\"", value.len()),
            limit: SETTING_VALUE_BYTES_MAX,
        });
    }
    Ok(value.to_owned())
}

/// Checks `value` for `setting` and returns what is stored.
fn checked(setting: &KnownSetting, value: &str) -> Result<String, GatewayError> {
    let value = checked_length(setting.name, value)?;
    let invalid = |reason: &str| GatewayError::InvalidParameterValue {
        name: setting.name.to_owned(),
        value: value.clone(),
        reason: reason.to_owned(),
    };
    let folded = value.trim().to_ascii_lowercase();
    match setting.check {
        Check::Any => Ok(value.clone()),
        Check::Utf8Encoding => match folded.as_str() {
            "utf8" | "utf-8" | "unicode" => Ok("UTF8".to_owned()),
            _ => Err(invalid("Arbor sends and receives UTF8 only.")),
        },
        Check::Isolation => {
            let level = folded.split_whitespace().collect::<Vec<_>>().join(" ");
            match level.as_str() {
                "read uncommitted" | "read committed" | "repeatable read" => Ok(level),
                "serializable" => Err(serializable_refused()),
                _ => Err(invalid(
                    "Available values: read uncommitted, read committed, repeatable read.",
                )),
            }
        }
        Check::TimeZone => {
            if is_utc(&folded) {
                Ok(value.trim().to_owned())
            } else {
                Err(invalid(
                    "Arbor renders timestamps in UTC; only UTC equivalents (UTC, Etc/UTC, GMT, +00:00) are accepted.",
                ))
            }
        }
        Check::DateStyle => date_style(&folded)
            .ok_or_else(|| invalid("Arbor renders dates in ISO style only (e.g. 'ISO, MDY').")),
        Check::Only(only) => {
            if folded == only {
                Ok(only.to_owned())
            } else {
                Err(invalid(&format!("Arbor supports only '{only}'.")))
            }
        }
        Check::BoolOnly(only) => match parse_bool(&folded) {
            Some(parsed) if parsed == only => Ok(if only { "on" } else { "off" }.to_owned()),
            Some(_) => Err(GatewayError::unsupported(format!(
                "{} = {}",
                setting.name,
                if only { "off" } else { "on" }
            ))),
            None => Err(invalid("A Boolean value is required.")),
        },
        Check::Integer { min, max } => match folded.parse::<i64>() {
            Ok(number) if (min..=max).contains(&number) => Ok(number.to_string()),
            _ => Err(invalid(&format!(
                "An integer between {min} and {max} is required."
            ))),
        },
    }
}

/// SERIALIZABLE would be a lie: Arbor gives snapshot isolation.
pub(crate) fn serializable_refused() -> GatewayError {
    GatewayError::unsupported(
        "SERIALIZABLE isolation (Arbor provides snapshot isolation, which Postgres calls REPEATABLE READ)",
    )
}

/// Postgres' boolean spellings.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// True for the zone names and offsets that mean UTC.
fn is_utc(value: &str) -> bool {
    const UTC_NAMES: [&str; 10] = [
        "utc",
        "etc/utc",
        "gmt",
        "etc/gmt",
        "uct",
        "etc/uct",
        "zulu",
        "etc/zulu",
        "universal",
        "z",
    ];
    if UTC_NAMES.contains(&value) {
        return true;
    }
    // Numeric offsets: 0, +0, -00, +00:00, 0.0 (hours).
    let digits = value.trim_start_matches(['+', '-']);
    !digits.is_empty()
        && digits.len() <= 8
        && digits.chars().all(|c| c == '0' || c == ':' || c == '.')
        && digits.starts_with('0')
}

/// `ISO` with an optional order (MDY default), normalised as Postgres
/// shows it; `None` for non-ISO output styles.
fn date_style(value: &str) -> Option<String> {
    let mut order = "MDY";
    let mut iso = false;
    for part in value.split(',').map(str::trim) {
        match part {
            "iso" => iso = true,
            "mdy" | "us" | "noneuropean" | "non-european" => order = "MDY",
            "dmy" | "euro" | "european" => order = "DMY",
            "ymd" => order = "YMD",
            _ => return None,
        }
    }
    iso.then(|| format!("ISO, {order}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_settings_are_sorted_case_insensitively_and_unique() {
        for pair in KNOWN_SETTINGS.windows(2) {
            assert!(
                pair[0].name.to_lowercase() < pair[1].name.to_lowercase(),
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn every_default_passes_its_own_check() {
        for setting in KNOWN_SETTINGS.iter().filter(|setting| !setting.read_only) {
            assert_eq!(
                checked(setting, setting.default).expect(setting.name),
                setting.default,
                "{}",
                setting.name
            );
        }
    }

    #[test]
    fn set_local_lasts_until_the_block_ends_and_session_set_outlives_it() {
        let mut settings = Settings::for_login("alice", []);
        settings
            .set("statement_timeout", Some("5s"), Scope::Local, false)
            .expect("a no-op outside a block");
        assert_eq!(settings.get("statement_timeout").as_deref(), Some("0"));
        settings
            .set("statement_timeout", Some("5s"), Scope::Local, true)
            .expect("local");
        assert_eq!(settings.get("statement_timeout").as_deref(), Some("5s"));
        settings
            .set("lock_timeout", Some("1s"), Scope::Local, true)
            .expect("local");
        settings
            .set("lock_timeout", Some("2s"), Scope::Session, true)
            .expect("session");
        settings.end_block();
        assert_eq!(settings.get("statement_timeout").as_deref(), Some("0"));
        assert_eq!(settings.get("lock_timeout").as_deref(), Some("2s"));
    }

    #[test]
    fn utc_equivalents_are_the_only_time_zones() {
        for zone in ["UTC", "Etc/UTC", "GMT", "+00:00", "0", "-00", "Z"] {
            assert!(is_utc(&zone.to_lowercase()), "{zone}");
        }
        for zone in ["Europe/Berlin", "+01:00", "-7", "", "+"] {
            assert!(!is_utc(&zone.to_lowercase()), "{zone}");
        }
    }

    #[test]
    fn custom_settings_are_bounded_per_session() {
        let mut settings = Settings::default();
        for index in 0..SESSION_CUSTOM_SETTINGS_MAX {
            settings
                .set(&format!("app.s{index}"), Some("v"), Scope::Session, false)
                .expect("under the limit");
        }
        let error = settings
            .set("app.one_more", Some("v"), Scope::Session, false)
            .expect_err("limit");
        assert_eq!(error.sqlstate(), "54000");
        // Changing one already held is fine.
        settings
            .set("app.s0", Some("w"), Scope::Session, false)
            .expect("held already");
    }

    #[test]
    fn startup_values_that_fail_their_check_are_ignored() {
        let settings = Settings::for_login(
            "bob",
            [
                ("TimeZone", "Europe/Berlin"),
                ("application_name", "app"),
                ("DateStyle", "ISO"),
                ("server_version", "9.0"),
            ],
        );
        assert_eq!(settings.get("timezone").as_deref(), Some("UTC"));
        assert_eq!(settings.get("application_name").as_deref(), Some("app"));
        assert_eq!(settings.get("datestyle").as_deref(), Some("ISO, MDY"));
        assert_eq!(settings.get("server_version").as_deref(), Some("16.6"));
        assert_eq!(settings.user(), "bob");
    }
}
