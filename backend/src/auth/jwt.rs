//! Bearer token checks on `jsonwebtoken`: one key, one algorithm, `exp` required.

use super::{unauthenticated, User};
use crate::api::error::ApiError;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
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
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub key: JwtKey,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
}

fn read_public_key(path: &Path) -> Result<(DecodingKey, Algorithm), String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read --jwt-public-key {}: {e}", path.display()))?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((key, Algorithm::RS256));
    }
    DecodingKey::from_ec_pem(&pem)
        .map(|key| (key, Algorithm::ES256))
        .map_err(|e| {
            format!(
                "--jwt-public-key {}: not an RSA or EC public key in PEM: {e}",
                path.display()
            )
        })
}

impl JwtVerifier {
    pub fn new(settings: &JwtSettings) -> Result<Self, String> {
        let (key, algorithm) = match &settings.key {
            JwtKey::Secret(secret) if secret.len() < 32 => {
                return Err("--jwt-secret must be at least 32 bytes".into())
            }
            JwtKey::Secret(secret) => (
                DecodingKey::from_secret(secret.as_bytes()),
                Algorithm::HS256,
            ),
            JwtKey::PublicKeyFile(path) => read_public_key(path)?,
        };
        // Only the key's own algorithm: a token signed "HS256" with the public key as the
        // secret, or one with `alg: none`, never verifies.
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
        Ok(JwtVerifier { key, validation })
    }

    pub fn verify(&self, token: &str) -> Result<User, ApiError> {
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            tracing::debug!(error = %e, "token refused");
            unauthenticated(format!("Invalid token: {e}"))
        })?;
        User::parse(&data.claims.sub)
            .ok_or_else(|| unauthenticated("Invalid token: sub must be 1 to 256 printable bytes"))
    }
}
