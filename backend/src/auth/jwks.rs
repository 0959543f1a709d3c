//! `--jwks-url`: the identity provider's public keys, fetched at start, again once the
//! set's `Cache-Control: max-age` has passed (so a key the provider withdrew stops
//! verifying then), and when a token names a key id not seen yet (the provider rotated
//! its keys).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Largest key set read, in bytes.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Most keys kept from one set.
const MAX_KEYS: usize = 100;
/// Unknown key ids fetch the set again at most this often, so a flood of made-up ids
/// costs the provider one request per interval.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a set is used when its answer names no `max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Longest `max-age` honoured: a withdrawn key stops verifying within a day at most.
const LONGEST_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// One verifying key and the only algorithm it verifies.
#[derive(Clone)]
pub struct Key {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

type Keys = Arc<HashMap<String, Key>>;

/// The keys of the last set fetched, and until when they are used without a look at the
/// provider.
#[derive(Clone)]
struct Cached {
    keys: Keys,
    fresh_until: Instant,
}

pub struct Jwks {
    url: String,
    http: reqwest::Client,
    cached: RwLock<Cached>,
    /// When the set was last asked for; held while fetching, so one fetch runs at a time.
    fetched: tokio::sync::Mutex<Instant>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.current().keys.keys().cloned().collect();
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .field("key_ids", &ids)
            .finish()
    }
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<serde_json::Value>,
}

impl Jwks {
    /// Fetches the set once; a server that cannot reach its provider does not start.
    pub async fn fetch(url: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client for --jwks-url: {e}"))?;
        let started = Instant::now();
        let (keys, max_age) = download(&http, url).await?;
        if keys.is_empty() {
            return Err(format!(
                "--jwks-url {url}: no usable signing key in the set"
            ));
        }
        Ok(Jwks {
            url: url.to_owned(),
            http,
            cached: RwLock::new(Cached {
                keys: Arc::new(keys),
                fresh_until: started + max_age,
            }),
            fetched: tokio::sync::Mutex::new(started),
        })
    }

    fn current(&self) -> Cached {
        self.cached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The key with this id, from a set that is still fresh when there is one: the set is
    /// fetched again once its max-age has passed or when the id is not known yet.
    pub async fn key(&self, kid: &str) -> Option<Key> {
        let usable = |cached: &Cached| {
            (Instant::now() < cached.fresh_until)
                .then(|| cached.keys.get(kid).cloned())
                .flatten()
        };
        if let Some(key) = usable(&self.current()) {
            return Some(key);
        }
        let mut fetched = self.fetched.lock().await;
        // Another request may have fetched the set while this one waited.
        if let Some(key) = usable(&self.current()) {
            return Some(key);
        }
        if fetched.elapsed() >= MIN_REFRESH_INTERVAL {
            *fetched = Instant::now();
            self.refresh(*fetched).await;
        }
        // A provider that cannot be reached leaves the last set in use; it is asked
        // again at most once per MIN_REFRESH_INTERVAL.
        self.current().keys.get(kid).cloned()
    }

    async fn refresh(&self, started: Instant) {
        match download(&self.http, &self.url).await {
            // What the provider answers is the set, even empty: it withdrew every key then.
            Ok((keys, max_age)) => {
                if keys.is_empty() {
                    tracing::warn!("--jwks-url answered no usable key: every token is refused");
                } else {
                    tracing::info!(
                        keys = keys.len(),
                        max_age_s = max_age.as_secs(),
                        "signing keys fetched again from --jwks-url"
                    );
                }
                *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Cached {
                    keys: Arc::new(keys),
                    fresh_until: started + max_age,
                };
            }
            Err(e) => tracing::warn!(error = %e, "cannot fetch --jwks-url; keeping the old keys"),
        }
    }
}

/// How long a set may be used, from its answer's `Cache-Control`: `max-age` (capped at
/// [`LONGEST_MAX_AGE`]), none for `no-cache` or `no-store`, [`DEFAULT_MAX_AGE`] without
/// either.
fn max_age(cache_control: Option<&str>) -> Duration {
    let Some(value) = cache_control else {
        return DEFAULT_MAX_AGE;
    };
    let mut age = DEFAULT_MAX_AGE;
    for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-cache" || directive == "no-store" {
            return Duration::ZERO;
        }
        if let Some(seconds) = directive.strip_prefix("max-age=") {
            if let Ok(seconds) = seconds.trim_matches('"').parse::<u64>() {
                age = Duration::from_secs(seconds).min(LONGEST_MAX_AGE);
            }
        }
    }
    age
}

async fn download(
    http: &reqwest::Client,
    url: &str,
) -> Result<(HashMap<String, Key>, Duration), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot fetch --jwks-url {url}: {e}");
    let mut response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(&e))?;
    let age = max_age(
        response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
    );
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(&e))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(fail(&format_args!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    let set: KeySet = serde_json::from_slice(&body).map_err(|e| fail(&e))?;
    Ok((usable_keys(set.keys), age))
}

/// The signing keys of a set, by id. Keys without an id, of an unknown type, for
/// encryption or shared secrets (`oct`: anyone holding the set could sign) are skipped.
fn usable_keys(keys: Vec<serde_json::Value>) -> HashMap<String, Key> {
    keys.into_iter()
        .filter_map(|value| {
            let jwk: Jwk = serde_json::from_value(value)
                .map_err(|e| tracing::debug!(error = %e, "JWKS entry skipped"))
                .ok()?;
            let kid = jwk.common.key_id.clone()?;
            let algorithm = algorithm_of(&jwk)?;
            let key = DecodingKey::from_jwk(&jwk).ok()?;
            Some((kid, Key { key, algorithm }))
        })
        .take(MAX_KEYS)
        .collect()
}

/// The one algorithm a key verifies: its `alg`, or the usual one for its type.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let usual = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let algorithm = match &jwk.common.key_algorithm {
        Some(alg) => Algorithm::from_str(&alg.to_string()).ok()?,
        None => usual,
    };
    // A declared `alg` must fit the key's type (never HS256 over an RSA key's bytes).
    let family = |a: Algorithm| match a {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => 1,
        Algorithm::ES256 | Algorithm::ES384 => 2,
        Algorithm::EdDSA => 3,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => 0,
    };
    (family(algorithm) == family(usual)).then_some(algorithm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/tests/fixtures/{name}.jwk.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
    }

    #[test]
    fn a_set_is_used_for_its_max_age() {
        assert_eq!(max_age(None), DEFAULT_MAX_AGE);
        assert_eq!(max_age(Some("public, max-age=60")), Duration::from_secs(60));
        assert_eq!(
            max_age(Some("Max-Age=\"5\", must-revalidate")),
            Duration::from_secs(5)
        );
        assert_eq!(max_age(Some("max-age=99999999")), LONGEST_MAX_AGE);
        assert_eq!(max_age(Some("max-age=soon")), DEFAULT_MAX_AGE);
        assert_eq!(max_age(Some("no-store")), Duration::ZERO);
        assert_eq!(max_age(Some("max-age=60, no-cache")), Duration::ZERO);
    }

    #[test]
    fn signing_keys_are_kept_by_id_with_their_algorithm() {
        let mut no_alg = fixture("ec");
        no_alg["kid"] = json!("ec-no-alg");
        no_alg.as_object_mut().expect("object").remove("alg");
        let keys = usable_keys(vec![fixture("rsa-a"), fixture("ec"), no_alg]);
        let algorithms: HashMap<&str, Algorithm> = keys
            .iter()
            .map(|(k, v)| (k.as_str(), v.algorithm))
            .collect();
        assert_eq!(
            algorithms,
            HashMap::from([
                ("rsa-a", Algorithm::RS256),
                ("ec", Algorithm::ES256),
                ("ec-no-alg", Algorithm::ES256),
            ])
        );
    }

    #[test]
    fn secrets_mismatched_algorithms_and_unknown_entries_are_skipped() {
        let mut confused = fixture("rsa-a");
        confused["alg"] = json!("HS256");
        let mut no_kid = fixture("rsa-b");
        no_kid.as_object_mut().expect("object").remove("kid");
        let keys = usable_keys(vec![
            json!({"kty": "oct", "kid": "shared", "k": "c2VjcmV0"}),
            confused,
            no_kid,
            json!({"kty": "XYZ", "kid": "odd"}),
            json!("not a key"),
        ]);
        assert!(keys.is_empty(), "{:?}", keys.keys().collect::<Vec<_>>());
    }
}
