//! HS256 JWTs: verification (algorithm pinned, `exp` required, `nbf`/`iss`/`aud` checked)
//! and minting for `colloquy token`.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::domain::{AuthMethod, Principal, Role};

/// Why a credential was refused. The reason is logged; the token never is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization header")]
    Missing,
    #[error("Authorization scheme is not Bearer")]
    WrongScheme,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token has the wrong issuer")]
    WrongIssuer,
    #[error("token has the wrong audience")]
    WrongAudience,
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    #[error("token signature invalid")]
    BadSignature,
    #[error("token claims invalid: {0}")]
    BadClaims(&'static str),
    #[error("token malformed")]
    Malformed,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// Verifies bearer tokens against the configured HS256 secret.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    default_role: Role,
}

impl JwtVerifier {
    pub fn new(config: &AuthConfig) -> Self {
        // Pinned to HS256: a token naming any other algorithm (`none`, RS256...) is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if config.issuer.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&[&config.issuer]);
        }
        if config.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&config.audience]);
        }
        Self {
            key: DecodingKey::from_secret(config.jwt_secret.expose().as_bytes()),
            validation,
            default_role: Role::parse(&config.default_role).unwrap_or(Role::Viewer),
        }
    }

    /// Verifies a token and maps its claims to a principal.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::WrongAlgorithm
                }
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::MissingRequiredClaim(_) => AuthError::BadClaims("missing exp or sub"),
                _ => AuthError::Malformed,
            },
        )?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() {
            return Err(AuthError::BadClaims("empty sub"));
        }
        let named: Vec<&str> = claims
            .role
            .iter()
            .map(String::as_str)
            .chain(claims.roles.iter().flatten().map(String::as_str))
            .collect();
        let role = if named.is_empty() {
            self.default_role
        } else {
            // The highest role the token names; unknown role names grant nothing.
            named
                .iter()
                .filter_map(|r| Role::parse(r))
                .max()
                .ok_or(AuthError::BadClaims("no known role"))?
        };
        Ok(Principal {
            user_id: claims.sub,
            email: claims.email.map(|e| e.to_ascii_lowercase()),
            role,
            method: AuthMethod::Jwt,
        })
    }
}

/// What `colloquy token` mints.
pub struct TokenRequest<'a> {
    pub sub: &'a str,
    pub email: Option<&'a str>,
    pub role: Role,
    pub ttl_secs: u64,
}

/// Mints an HS256 token with the configured secret, issuer and audience.
pub fn mint(
    config: &AuthConfig,
    request: &TokenRequest<'_>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let claims = Claims {
        sub: request.sub.to_owned(),
        exp: now + request.ttl_secs,
        nbf: None,
        iat: Some(now),
        email: request.email.map(str::to_owned),
        role: Some(request.role.as_str().to_owned()),
        roles: None,
        iss: (!config.issuer.is_empty()).then(|| config.issuer.clone()),
        aud: (!config.audience.is_empty()).then(|| config.audience.clone()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(config.jwt_secret.expose().as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config() -> AuthConfig {
        let env: &[(&str, &str)] = &[("COLLOQUY_CONFIG_DIR", "/nonexistent")];
        Config::load_from(env).unwrap().auth
    }

    #[test]
    fn minted_tokens_verify_and_map_claims() {
        let cfg = config();
        let token = mint(
            &cfg,
            &TokenRequest {
                sub: "u1",
                email: Some("A@Example.com"),
                role: Role::Admin,
                ttl_secs: 60,
            },
        )
        .unwrap();
        let p = JwtVerifier::new(&cfg).verify(&token).unwrap();
        assert_eq!(p.user_id, "u1");
        assert_eq!(p.email.as_deref(), Some("a@example.com"));
        assert_eq!(p.role, Role::Admin);
    }

    #[test]
    fn refuses_other_secrets_and_garbage() {
        let cfg = config();
        let mut other = cfg.clone();
        other.jwt_secret = crate::config::Secret::new("another-secret-another-secret-xx");
        let token = mint(
            &other,
            &TokenRequest {
                sub: "u",
                email: None,
                role: Role::User,
                ttl_secs: 60,
            },
        )
        .unwrap();
        let v = JwtVerifier::new(&cfg);
        assert_eq!(v.verify(&token), Err(AuthError::BadSignature));
        assert_eq!(v.verify("garbage"), Err(AuthError::Malformed));
    }
}
