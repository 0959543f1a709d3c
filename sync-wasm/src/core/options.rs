//! The options object `new ChatSync(...)` takes, checked once at construction.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::error::SyncError;

/// Polling parameters, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub base_interval_ms: u32,
    pub max_interval_ms: u32,
    pub backoff_factor: f64,
    pub unchanged_polls_before_backoff: u32,
    pub burst_polls: u32,
    pub mode: Mode,
    /// How long a long-poll asks the server to hold it (`wait_ms`).
    pub wait_ms: u32,
    /// A request unanswered after this long (plus `wait_ms` for a long-poll) is aborted
    /// and counts as a network error, so one hung request cannot stop polling for good.
    pub request_timeout_ms: u32,
}

/// How the client learns of changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Each poll is held by the server until something changes (or `waitMs` pass), and the
    /// next one is sent as soon as it answers: changes show at once, a quiet chat costs one
    /// request per `waitMs`.
    #[default]
    LongPoll,
    /// Plain polls on the backoff schedule, for servers without long-polling.
    Interval,
}

/// `credentials` of every `fetch`: whether cookies go along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credentials {
    Omit,
    SameOrigin,
    Include,
}

/// The longest hold the server accepts (`wait_ms` above it answers 400).
pub const MAX_WAIT_MS: u32 = 30_000;

/// The longest user id the server gives out (`GET /api/me`).
const MAX_USER_ID_BYTES: usize = 256;

impl Default for Config {
    fn default() -> Self {
        Config {
            base_interval_ms: 1000,
            max_interval_ms: 5000,
            backoff_factor: 1.5,
            unchanged_polls_before_backoff: 2,
            burst_polls: 5,
            mode: Mode::LongPoll,
            wait_ms: 25_000,
            request_timeout_ms: 15_000,
        }
    }
}

/// `ChatSyncOptions` as JavaScript passes it (camelCase). Unknown keys are rejected so a
/// misspelt option fails loudly instead of being ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatSyncOptions {
    pub base_url: String,
    #[serde(default)]
    pub context_id: Option<String>,
    #[serde(default)]
    pub base_interval_ms: Option<u32>,
    #[serde(default)]
    pub max_interval_ms: Option<u32>,
    #[serde(default)]
    pub backoff_factor: Option<f64>,
    #[serde(default)]
    pub unchanged_polls_before_backoff: Option<u32>,
    #[serde(default)]
    pub burst_polls: Option<u32>,
    /// Extra request headers, in the order the object lists them.
    #[serde(default, deserialize_with = "header_pairs")]
    pub headers: Option<Vec<(String, String)>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub wait_ms: Option<u32>,
    #[serde(default)]
    pub request_timeout_ms: Option<u32>,
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Who the offline queue and the tab election belong to: sends queued by one user are
    /// never replayed, or shown, under another's credentials.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// Reads `{name: value, ...}` as pairs: a sorted map would only add code to the download.
fn header_pairs<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<(String, String)>>, D::Error> {
    struct Pairs;

    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of header names and string values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::new();
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }

    deserializer.deserialize_map(Pairs).map(Some)
}

impl ChatSyncOptions {
    /// What the browser-wide names (queue key, tab election) are made of: the base URL,
    /// and the user when one is given.
    pub fn scope(&self) -> String {
        match &self.user_id {
            Some(user) => [self.base_url.as_str(), " user:", user].concat(),
            None => self.base_url.clone(),
        }
    }

    /// The polling configuration, defaults filled in.
    pub fn config(&self) -> Result<Config, SyncError> {
        let d = Config::default();
        let config = Config {
            base_interval_ms: self.base_interval_ms.unwrap_or(d.base_interval_ms),
            max_interval_ms: self.max_interval_ms.unwrap_or(d.max_interval_ms),
            backoff_factor: self.backoff_factor.unwrap_or(d.backoff_factor),
            unchanged_polls_before_backoff: self
                .unchanged_polls_before_backoff
                .unwrap_or(d.unchanged_polls_before_backoff),
            burst_polls: self.burst_polls.unwrap_or(d.burst_polls),
            mode: self.mode.unwrap_or(d.mode),
            wait_ms: self.wait_ms.unwrap_or(d.wait_ms),
            request_timeout_ms: self.request_timeout_ms.unwrap_or(d.request_timeout_ms),
        };
        if self
            .user_id
            .as_ref()
            .is_some_and(|u| u.is_empty() || u.len() > MAX_USER_ID_BYTES)
        {
            return Err(SyncError::invalid("userId must be 1 to 256 bytes"));
        }
        if config.wait_ms == 0 || config.wait_ms > MAX_WAIT_MS {
            return Err(SyncError::invalid("waitMs must be from 1 to 30000"));
        }
        if config.request_timeout_ms == 0 {
            return Err(SyncError::invalid("requestTimeoutMs must be at least 1"));
        }
        if config.base_interval_ms == 0 {
            return Err(SyncError::invalid("baseIntervalMs must be at least 1"));
        }
        if config.max_interval_ms < config.base_interval_ms {
            return Err(SyncError::invalid(
                "maxIntervalMs must not be below baseIntervalMs",
            ));
        }
        if !(config.backoff_factor.is_finite() && config.backoff_factor >= 1.0) {
            return Err(SyncError::invalid(
                "backoffFactor must be a finite number of at least 1",
            ));
        }
        Ok(config)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn options(json: &str) -> ChatSyncOptions {
        serde_json::from_str(json).expect("options parse")
    }

    #[test]
    fn missing_numbers_take_the_documented_defaults() {
        let config = options(r#"{"baseUrl":"/api"}"#).config().expect("valid");
        assert_eq!(config, Config::default());
    }

    #[test]
    fn headers_keep_their_order_and_must_be_strings() {
        let o = options(r#"{"baseUrl":"/api","headers":{"X-B":"2","X-A":"1"}}"#);
        let pairs = [("X-B", "2"), ("X-A", "1")].map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(o.headers, Some(pairs.to_vec()));
        assert_eq!(options(r#"{"baseUrl":"/api"}"#).headers, None);
        for bad in [r#"{"X-A":1}"#, r#"["X-A"]"#, r#""X-A: 1""#] {
            let json = [r#"{"baseUrl":"/api","headers":"#, bad, "}"].concat();
            assert!(
                serde_json::from_str::<ChatSyncOptions>(&json).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn each_user_has_a_scope_of_their_own() {
        let alice = options(r#"{"baseUrl":"/api","userId":"alice"}"#).scope();
        let bob = options(r#"{"baseUrl":"/api","userId":"bob"}"#).scope();
        let nobody = options(r#"{"baseUrl":"/api"}"#).scope();
        assert_eq!(nobody, "/api", "without a user the names stay as they were");
        assert_ne!(alice, bob);
        assert_ne!(alice, nobody);
        assert!(
            serde_json::from_str::<ChatSyncOptions>(r#"{"baseUrl":"/api","userId":7}"#).is_err()
        );
        let long = format!(r#"{{"baseUrl":"/api","userId":"{}"}}"#, "u".repeat(257));
        for bad in [r#"{"baseUrl":"/api","userId":""}"#, long.as_str()] {
            assert!(options(bad).config().is_err(), "{bad}");
        }
        assert!(options(r#"{"baseUrl":"/api","userId":"alice"}"#)
            .config()
            .is_ok());
    }

    #[test]
    fn a_misspelt_option_is_rejected() {
        let parsed =
            serde_json::from_str::<ChatSyncOptions>(r#"{"baseUrl":"/api","baseIntervalMS":10}"#);
        assert!(parsed.is_err());
        for bad in [
            r#"{"baseUrl":"/api","mode":"longpoll"}"#,
            r#"{"baseUrl":"/api","credentials":"all"}"#,
        ] {
            assert!(
                serde_json::from_str::<ChatSyncOptions>(bad).is_err(),
                "{bad}"
            );
        }
        let o = options(r#"{"baseUrl":"/api","mode":"interval","credentials":"include"}"#);
        assert_eq!(o.config().expect("valid").mode, Mode::Interval);
        assert_eq!(o.credentials, Some(Credentials::Include));
    }

    #[test]
    fn nonsensical_intervals_are_invalid() {
        for bad in [
            r#"{"baseUrl":"/api","baseIntervalMs":0}"#,
            r#"{"baseUrl":"/api","baseIntervalMs":2000,"maxIntervalMs":1000}"#,
            r#"{"baseUrl":"/api","backoffFactor":0.5}"#,
            r#"{"baseUrl":"/api","waitMs":30001}"#,
            r#"{"baseUrl":"/api","requestTimeoutMs":0}"#,
        ] {
            let err = options(bad).config().expect_err(bad);
            assert_eq!(err.kind, crate::core::error::ErrorKind::Invalid);
        }
    }
}
