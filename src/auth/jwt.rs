//! JWT verification (algorithm pinned by key source, `exp` required, `nbf`/`iss`/`aud`
//! checked, claim names configurable) and minting for `colloquy token`.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::AuthError;
use super::keys::KeySources;
use crate::config::AuthConfig;
use crate::domain::Role;

/// What a verified token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub subject: String,
    pub email: Option<String>,
    /// Known roles the token names (unknown role names are ignored).
    pub roles: Vec<Role>,
    /// The `email_verified` claim, when the token has one.
    pub email_verified: Option<bool>,
    /// Until when (Unix seconds) the token is accepted: its `exp` plus the leeway.
    pub valid_until: u64,
}

pub struct JwtVerifier {
    keys: KeySources,
    leeway: u64,
    issuer: Option<String>,
    audience: Option<String>,
    subject_claim: String,
    email_claim: String,
    role_claims: Vec<String>,
}

impl JwtVerifier {
    pub fn new(config: &AuthConfig, keys: KeySources) -> Self {
        Self {
            keys,
            leeway: config.leeway_secs,
            issuer: (!config.issuer.is_empty()).then(|| config.issuer.clone()),
            audience: (!config.audience.is_empty()).then(|| config.audience.clone()),
            subject_claim: config.subject_claim.clone(),
            email_claim: config.email_claim.clone(),
            role_claims: config.role_claims.clone(),
        }
    }

    pub fn keys(&self) -> &KeySources {
        &self.keys
    }

    /// Verifies a token. Without `may_fetch`, nothing leaves the process.
    pub async fn verify(&self, token: &str, may_fetch: bool) -> Result<TokenClaims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // `alg: none` and unknown names fail here, before any key is chosen.
            ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
            _ => AuthError::Malformed,
        })?;
        let (key, alg) = self.keys.resolve(&header, may_fetch).await?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.validation(alg))
            .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                AuthError::WrongAlgorithm
            }
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::MissingRequiredClaim(_) => AuthError::BadClaims("missing exp"),
            _ => AuthError::Malformed,
        })?;
        self.map_claims(&data.claims)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &self.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        validation
    }

    fn map_claims(&self, claims: &Map<String, Value>) -> Result<TokenClaims, AuthError> {
        let subject = claim(claims, &self.subject_claim)
            .and_then(Value::as_str)
            .map(str::trim)
            // Subjects are ids: a control character (a NUL above all) would only reach the
            // database to fail there.
            .filter(|s| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control))
            .ok_or(AuthError::BadClaims(
                "missing, empty or unprintable subject",
            ))?
            .to_owned();
        let email = claim(claims, &self.email_claim)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let mut roles = Vec::new();
        for name in &self.role_claims {
            match claim(claims, name) {
                Some(Value::String(r)) => roles.extend(Role::parse(r)),
                Some(Value::Array(items)) => roles.extend(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .filter_map(Role::parse),
                ),
                _ => {}
            }
        }
        Ok(TokenClaims {
            subject,
            email,
            roles,
            email_verified: claims.get("email_verified").and_then(Value::as_bool),
            // Verification has checked `exp` is there and a number.
            valid_until: claims
                .get("exp")
                .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
                .unwrap_or(0)
                .saturating_add(self.leeway),
        })
    }
}

/// A claim by name or dotted path (`realm_access.roles`).
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.get(part)?;
    }
    Some(current)
}

/// What `colloquy token` mints.
pub struct TokenRequest<'a> {
    pub sub: &'a str,
    pub email: Option<&'a str>,
    pub role: Role,
    pub ttl_secs: u64,
}

/// Mints an HS256 token with the configured secret, claim names, issuer and audience.
pub fn mint(
    config: &AuthConfig,
    request: &TokenRequest<'_>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let mut claims = Map::new();
    claims.insert(config.subject_claim.clone(), request.sub.into());
    claims.insert("exp".into(), (now + request.ttl_secs).into());
    claims.insert("iat".into(), now.into());
    if let Some(email) = request.email {
        claims.insert(config.email_claim.clone(), email.into());
    }
    let role_claim = config
        .role_claims
        .first()
        .cloned()
        .unwrap_or_else(|| "role".to_owned());
    claims.insert(role_claim, request.role.as_str().into());
    if !config.issuer.is_empty() {
        claims.insert("iss".into(), config.issuer.clone().into());
    }
    if !config.audience.is_empty() {
        claims.insert("aud".into(), config.audience.clone().into());
    }
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

    fn verifier(cfg: &AuthConfig) -> JwtVerifier {
        JwtVerifier::new(cfg, KeySources::new(cfg).unwrap())
    }

    #[tokio::test]
    async fn minted_tokens_verify_and_map_claims() {
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
        let c = verifier(&cfg).verify(&token, true).await.unwrap();
        assert_eq!(c.subject, "u1");
        assert_eq!(c.email.as_deref(), Some("a@example.com"));
        assert_eq!(c.roles, vec![Role::Admin]);
    }

    #[test]
    fn claims_by_dotted_path() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"realm_access": {"roles": ["offline_access", "admin"]}, "sub": "x"}"#,
        )
        .unwrap();
        assert_eq!(
            claim(&claims, "realm_access.roles"),
            Some(&serde_json::json!(["offline_access", "admin"]))
        );
        assert_eq!(claim(&claims, "realm_access.missing"), None);
    }
}
