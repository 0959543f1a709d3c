//! Bearer token checks on `jsonwebtoken`: each key verifies its one algorithm, `exp`
//! required.

use super::jwks::{Jwks, Key};
use super::{unauthenticated, AuthError, User};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::path::Path;

/// Seconds of clock difference tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// Where the verifying key comes from.
#[derive(Debug, Clone)]
pub enum JwtKey {
    /// HS256 shared secret.
    Secret(String),
    /// PEM public key file: RSA (RS256) or P-256 (ES256).
    PublicKeyFile(std::path::PathBuf),
    /// The provider's key set, by `kid`.
    JwksUrl(String),
}

enum Keys {
    One(Key),
    Set(Jwks),
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

pub struct JwtVerifier {
    keys: Keys,
    /// The checks every token gets; with one key, for that key's algorithm.
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        let mut f = f.debug_struct("JwtVerifier");
        match &self.keys {
            Keys::One(key) => f.field("algorithm", &key.algorithm),
            Keys::Set(jwks) => f.field("jwks", jwks),
        }
        .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
}

fn read_public_key(path: &Path) -> Result<Key, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok(Key {
            key,
            algorithm: Algorithm::RS256,
        });
    }
    DecodingKey::from_ec_pem(&pem)
        .map(|key| Key {
            key,
            algorithm: Algorithm::ES256,
        })
        .map_err(|e| {
            format!(
                "--jwt-public-key {}: not an RSA or EC public key in PEM: {e}",
                path.display()
            )
        })
}

impl JwtVerifier {
    pub async fn new(settings: &JwtSettings) -> Result<Self, String> {
        let keys = match &settings.key {
            JwtKey::Secret(secret) if secret.len() < 32 => {
                return Err("--jwt-secret must be at least 32 bytes".into())
            }
            JwtKey::Secret(secret) => Keys::One(Key {
                key: DecodingKey::from_secret(secret.as_bytes()),
                algorithm: Algorithm::HS256,
            }),
            JwtKey::PublicKeyFile(path) => Keys::One(read_public_key(path)?),
            JwtKey::JwksUrl(url) => Keys::Set(Jwks::fetch(url).await?),
        };
        // Only the key's own algorithm: a token signed "HS256" with the public key as the
        // secret, or one with `alg: none`, never verifies. A key set's keys each have
        // theirs, set per token.
        let algorithm = match &keys {
            Keys::One(key) => key.algorithm,
            Keys::Set(_) => Algorithm::RS256,
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A configured issuer or audience is also required: a token without it is refused.
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(JwtVerifier { keys, validation })
    }

    pub async fn verify(&self, token: &str) -> Result<User, AuthError> {
        let refused = |e: jsonwebtoken::errors::Error| {
            tracing::debug!(error = %e, "token refused");
            unauthenticated(format!("Invalid token: {e}"))
        };
        let data = match &self.keys {
            Keys::One(key) => decode::<Claims>(token, &key.key, &self.validation),
            Keys::Set(jwks) => {
                let kid = decode_header(token)
                    .map_err(refused)?
                    .kid
                    .ok_or_else(|| unauthenticated("Invalid token: no kid in its header"))?;
                let key = jwks
                    .key(&kid)
                    .await
                    .ok_or_else(|| unauthenticated("Invalid token: unknown key id (kid)"))?;
                let mut validation = self.validation.clone();
                validation.algorithms = vec![key.algorithm];
                decode::<Claims>(token, &key.key, &validation)
            }
        }
        .map_err(refused)?;
        User::parse(&data.claims.sub)
            .ok_or_else(|| unauthenticated("Invalid token: sub must be 1 to 256 printable bytes"))
    }
}
