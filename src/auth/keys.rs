//! Which key verifies a token: the HS256 secret, a JWKS, or a PEM public key, each pinned to
//! its own algorithms, so `alg: none` and HS/RS confusion are refused before any check.

use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey, Header};

use super::AuthError;
use super::jwks::Jwks;
use crate::config::AuthConfig;

/// Asymmetric algorithms a JWKS or PEM key may be pinned to.
pub fn is_asymmetric_algorithm(name: &str) -> bool {
    matches!(
        Algorithm::from_str(name),
        Ok(Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA)
    )
}

/// The key sources, resolved at start-up.
pub struct KeySources {
    /// None when HS256 is off (`auth.hs256`).
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
    pem: Option<(DecodingKey, Algorithm)>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeySetupError {
    #[error("auth.public_key_pem_file: {0}")]
    Pem(String),
    #[error("auth.jwks_url: {0}")]
    Jwks(String),
}

impl KeySources {
    pub fn new(config: &AuthConfig) -> Result<Self, KeySetupError> {
        let pem = if config.public_key_pem_file.is_empty() {
            None
        } else {
            let alg = Algorithm::from_str(&config.public_key_algorithm)
                .map_err(|e| KeySetupError::Pem(e.to_string()))?;
            let bytes = std::fs::read(&config.public_key_pem_file)
                .map_err(|e| KeySetupError::Pem(e.to_string()))?;
            let key = match alg {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&bytes),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&bytes),
                _ => DecodingKey::from_rsa_pem(&bytes),
            }
            .map_err(|e| KeySetupError::Pem(e.to_string()))?;
            Some((key, alg))
        };
        let jwks = if config.jwks_url.is_empty() {
            None
        } else {
            Some(Jwks::new(config).map_err(KeySetupError::Jwks)?)
        };
        Ok(Self {
            secret: config
                .hs256_enabled()
                .then(|| DecodingKey::from_secret(config.jwt_secret.expose().as_bytes())),
            jwks,
            pem,
        })
    }

    pub fn jwks(&self) -> Option<&Jwks> {
        self.jwks.as_ref()
    }

    /// Changes whenever a key may have been withdrawn (the JWKS was fetched again).
    pub fn generation(&self) -> u64 {
        self.jwks.as_ref().map_or(0, Jwks::generation)
    }

    /// The key and algorithm for a token with this header, or why there is none. Without
    /// `may_fetch` nothing leaves the process (no JWKS refetch).
    pub async fn resolve(
        &self,
        header: &Header,
        may_fetch: bool,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        let alg = header.alg;
        if alg == Algorithm::HS256 {
            return self
                .secret
                .clone()
                .map(|k| (k, alg))
                .ok_or(AuthError::WrongAlgorithm);
        }
        let pem = self.pem.as_ref().filter(|(_, pinned)| *pinned == alg);
        if let Some(jwks) = &self.jwks
            && jwks.accepts(alg)
        {
            match jwks.key_for(header.kid.as_deref(), alg, may_fetch).await {
                Ok(key) => return Ok((key, alg)),
                // The PEM key may still be the one, for the same algorithm.
                Err(e) if pem.is_none() => return Err(e),
                Err(_) => {}
            }
        }
        match pem {
            Some((key, _)) => Ok((key.clone(), alg)),
            None => Err(AuthError::WrongAlgorithm),
        }
    }
}
