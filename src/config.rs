//! Configuration: `config/default.toml` (compiled in), then `config/$COLLOQUY_ENV.toml`,
//! then environment variables; validated once at start-up. The only reader of the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The defaults, shipped inside the binary so a bare `colloquy` runs anywhere.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// The development JWT secret shipped in `config/default.toml`; production refuses it.
pub const DEVELOPMENT_JWT_SECRET: &str = "colloquy-development-secret-change-me-0000";

/// The development pepper shipped in `config/default.toml`; production refuses it.
pub const DEVELOPMENT_USER_HASH_PEPPER: &str = "colloquy-development-pepper";

/// Fixed environment names operators and scripts rely on, and the setting each one sets.
pub const FIXED_ENV_NAMES: &[(&str, &str)] = &[
    ("COLLOQUY_LISTEN", "server.listen"),
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("COLLOQUY_JWT_SECRET", "auth.jwt_secret"),
    ("OPENAI_API_KEY", "providers.openai_api_key"),
    ("OPENAI_BASE_URL", "providers.openai_base_url"),
    ("ANTHROPIC_API_KEY", "providers.anthropic_api_key"),
    ("ANTHROPIC_BASE_URL", "providers.anthropic_base_url"),
    ("COLLOQUY_DEFAULT_MODEL", "providers.default_model"),
    ("AWS_ACCESS_KEY_ID", "files.s3_access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "files.s3_secret_access_key"),
    ("AWS_REGION", "files.s3_region"),
    ("AWS_ENDPOINT_URL", "files.s3_endpoint"),
];

/// The effective configuration. Field docs live in `config/default.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// From `COLLOQUY_ENV`, not from files.
    #[serde(skip_deserializing, default = "default_environment")]
    pub environment: String,
    /// Where `$COLLOQUY_ENV.toml` and `pricing.toml` overrides are looked for.
    #[serde(skip_deserializing, default)]
    pub config_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub cors: CorsConfig,
    pub security: SecurityConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub chat: ChatConfig,
    pub files: FilesConfig,
    pub providers: ProvidersConfig,
    pub telemetry: TelemetryConfig,
}

fn default_environment() -> String {
    "development".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(serialize_with = "serialize_redacted_url")]
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    pub migrate_on_start: bool,
    pub allow_sqlite_in_production: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    #[serde(serialize_with = "serialize_redacted_url")]
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    pub hsts_max_age_secs: u64,
    pub content_security_policy: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub jwt_secret: Secret,
    pub hs256: Hs256Mode,
    pub leeway_secs: u64,
    pub issuer: String,
    pub audience: String,
    pub subject_claim: String,
    pub email_claim: String,
    pub role_claims: Vec<String>,
    pub default_role: String,
    pub allowed_email_domains: Vec<String>,
    pub user_hash_pepper: Secret,
    pub jwks_url: String,
    pub jwks_algorithms: Vec<String>,
    pub jwks_refresh_secs: u64,
    pub jwks_min_refetch_secs: u64,
    pub public_key_pem_file: String,
    pub public_key_algorithm: String,
    pub api_key_cache_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatConfig {
    pub max_message_chars: usize,
    pub max_history_messages: usize,
    pub context_budget_tokens: u64,
    pub attachment_budget_chars: usize,
    pub max_image_bytes: u64,
    pub max_generation_secs: u64,
    pub keepalive_secs: u64,
    pub usage_queue: usize,
    pub usage_batch_rows: usize,
    pub usage_flush_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    pub max_upload_bytes: u64,
    pub max_files_per_upload: usize,
    pub allowed_types: Vec<String>,
    pub transfer_timeout_secs: u64,
    pub text_budget_chars: usize,
    pub backend: FilesBackend,
    pub local_dir: String,
    pub s3_bucket: String,
    pub s3_endpoint: String,
    pub s3_region: String,
    pub s3_access_key_id: String,
    pub s3_secret_access_key: Secret,
    pub s3_prefix: String,
    pub s3_allow_http: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilesBackend {
    Local,
    S3,
}

/// Whether HS256 tokens (signed with `jwt_secret`) are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hs256Mode {
    /// On unless a JWKS or a PEM key is configured.
    Auto,
    On,
    Off,
}

impl AuthConfig {
    pub fn hs256_enabled(&self) -> bool {
        match self.hs256 {
            Hs256Mode::On => true,
            Hs256Mode::Off => false,
            Hs256Mode::Auto => self.jwks_url.is_empty() && self.public_key_pem_file.is_empty(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub backend: RateLimitBackend,
    pub redis_failure: RedisFailure,
    pub redis_prefix: String,
    pub trusted_proxies: Vec<String>,
    pub forwarded_header: ForwardedHeaderName,
    pub max_tracked_keys: usize,
    pub sweep_interval_secs: u64,
    pub chat: QuotaConfig,
    pub upload: QuotaConfig,
    pub read: QuotaConfig,
    pub anonymous: QuotaConfig,
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, RoleQuotas>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    Auto,
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeaderName {
    XForwardedFor,
    Forwarded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisFailure {
    Open,
    Closed,
}

/// A bucket: `capacity` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub capacity: u32,
    pub per_minute: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleQuotas {
    pub chat: Option<QuotaConfig>,
    pub upload: Option<QuotaConfig>,
    pub read: Option<QuotaConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    pub default_model: String,
    pub openai_api_key: Secret,
    pub openai_base_url: String,
    pub anthropic_api_key: Secret,
    pub anthropic_base_url: String,
    pub connect_timeout_secs: u64,
    pub request_timeout_secs: u64,
    pub first_token_timeout_secs: u64,
    pub stream_idle_timeout_secs: u64,
    pub max_retries: u32,
    pub retry_max_wait_secs: u64,
    pub breaker_failures: u32,
    pub breaker_cooldown_secs: u64,
    pub mock_first_token_ms: u64,
    pub mock_token_interval_ms: u64,
    #[serde(default)]
    pub named: std::collections::BTreeMap<String, NamedProvider>,
}

/// The shipped default for OPENAI_BASE_URL; another value registers `openai` without a key.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedProvider {
    pub kind: ProviderKind,
    pub base_url: String,
    /// The environment variable holding the key (read here, at load).
    #[serde(default)]
    pub api_key_env: String,
    /// Filled from `api_key_env` at load, or set directly through COLLOQUY_PROVIDERS__NAMED__<NAME>__API_KEY.
    #[serde(default)]
    pub api_key: Secret,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Openai,
    Anthropic,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

/// A secret setting: never printed, never serialized in clear, zeroed on drop.
#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: &str) -> Self {
        Self(SecretString::from(value))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() {
            "\"\""
        } else {
            "[redacted]"
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_empty() { "" } else { "[redacted]" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        Ok(Self(SecretString::from(value)))
    }
}

fn serialize_redacted_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

/// Hides passwords in `scheme://user:password@host/...?password=...`, for logs and
/// `check-config`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let rest = &base[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or("");
            format!(
                "{}://{user}:[redacted]@{}",
                &base[..scheme_end],
                &rest[at + 1..]
            )
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => {
                    format!("{k}=[redacted]")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// A setting that is wrong, named the way an operator would set it.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{setting}`: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    fn new(setting: &str, problem: impl Into<String>) -> Self {
        let env = FIXED_ENV_NAMES
            .iter()
            .find(|(_, key)| *key == setting)
            .map(|(name, _)| format!(" ({name})"))
            .unwrap_or_default();
        Self {
            setting: format!("{setting}{env}"),
            problem: problem.into(),
        }
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Postgres,
    Sqlite,
}

impl DatabaseKind {
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

/// Where the process environment comes from; tests pass their own map.
pub trait EnvSource {
    fn get(&self, name: &str) -> Option<String>;
    fn all(&self) -> Vec<(String, String)>;
}

/// The real process environment.
pub struct ProcessEnv;

// The one place the process environment is read.
#[allow(clippy::disallowed_methods)]
impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn all(&self) -> Vec<(String, String)> {
        // vars() would panic on a non-UTF-8 variable that has nothing to do with us.
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

impl EnvSource for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
    fn all(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }
}

impl Config {
    /// Loads and validates the configuration from files and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(&ProcessEnv)
    }

    /// Loads from files and the given environment, then validates.
    pub fn load_from(env: &(impl EnvSource + ?Sized)) -> Result<Self, ConfigError> {
        let config = Self::load_unvalidated(env)?;
        config.validate()?;
        Ok(config)
    }

    /// Loads without validation (what `check-config` shows before judging it).
    pub fn load_unvalidated(env: &(impl EnvSource + ?Sized)) -> Result<Self, ConfigError> {
        let environment = env
            .get("COLLOQUY_ENV")
            .filter(|e| !e.is_empty())
            .unwrap_or_else(default_environment);
        if !environment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                "COLLOQUY_ENV",
                "must be a plain name such as development or production",
            ));
        }
        let dir = env
            .get("COLLOQUY_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));

        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        // The environment's file is optional; when present it must be valid.
        let env_file = dir.join(format!("{environment}.toml"));
        if env_file.is_file() {
            figment = figment.merge(Toml::file_exact(env_file));
        }

        // COLLOQUY_<SECTION>__<KEY>; only names with a section separator, so the fixed
        // names (COLLOQUY_LISTEN, COLLOQUY_ENV, ...) are not mistaken for sections.
        let sectioned: Vec<(String, String)> = env
            .all()
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix("COLLOQUY_")?;
                rest.contains("__")
                    .then(|| (rest.to_ascii_lowercase().replace("__", "."), v))
            })
            .collect();
        for (key, value) in sectioned {
            figment = figment.merge((key, parse_env_value(&value)));
        }
        for (name, key) in FIXED_ENV_NAMES {
            // Empty counts as unset, as shells and .env files commonly write it.
            if let Some(value) = env.get(name).filter(|v| !v.is_empty()) {
                // Kept as strings: a numeric-looking secret must stay a string.
                figment = figment.merge((*key, value));
            }
        }

        let mut config: Config = figment.extract().map_err(|e| {
            let setting = e.path.join(".");
            let problem = e.kind.to_string();
            ConfigError::new(
                if setting.is_empty() {
                    "configuration"
                } else {
                    &setting
                },
                problem,
            )
        })?;
        config.environment = environment;
        config.config_dir = dir;
        for named in config.providers.named.values_mut() {
            if !named.api_key_env.is_empty()
                && let Some(key) = env.get(&named.api_key_env).filter(|k| !k.is_empty())
            {
                named.api_key = Secret::new(&key);
            }
        }
        if let Some(filter) = env.get("RUST_LOG").filter(|f| !f.is_empty()) {
            config.telemetry.filter = filter;
        }
        Ok(config)
    }

    pub fn is_production(&self) -> bool {
        self.environment == "production"
    }

    /// Refuses settings that would make the server unsafe or unable to work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.server.body_limit_bytes == 0 {
            return Err(ConfigError::new(
                "server.body_limit_bytes",
                "must be greater than 0",
            ));
        }
        if self.server.request_timeout_secs == 0 {
            return Err(ConfigError::new(
                "server.request_timeout_secs",
                "must be greater than 0",
            ));
        }
        let Some(kind) = DatabaseKind::of(&self.database.url) else {
            return Err(ConfigError::new(
                "database.url",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        };
        if self.database.max_connections == 0 {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        let redis = &self.redis.url;
        if !(redis.is_empty() || redis.starts_with("redis://")) {
            return Err(ConfigError::new(
                "redis.url",
                "must start with redis:// (or be empty); TLS (rediss://) is not supported yet",
            ));
        }
        self.validate_cors()?;
        self.validate_auth()?;
        self.validate_rate_limit()?;
        self.validate_providers()?;
        self.validate_files()?;
        let c = &self.chat;
        if c.max_message_chars == 0
            || c.max_generation_secs == 0
            || c.usage_queue == 0
            || c.usage_batch_rows == 0
            || c.keepalive_secs == 0
        {
            return Err(ConfigError::new(
                "chat",
                "max_message_chars, max_generation_secs, keepalive_secs, usage_queue and usage_batch_rows must be at least 1",
            ));
        }
        if self.is_production()
            && kind == DatabaseKind::Sqlite
            && !self.database.allow_sqlite_in_production
        {
            return Err(ConfigError::new(
                "database.url",
                "is SQLite in production; use Postgres, or opt in with COLLOQUY_DATABASE__ALLOW_SQLITE_IN_PRODUCTION=true",
            ));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        if self.auth.jwt_secret.is_empty() {
            // An empty HMAC key would accept tokens anyone can sign.
            return Err(ConfigError::new("auth.jwt_secret", "must not be empty"));
        }
        if self.is_production() {
            if self.auth.jwt_secret.expose() == DEVELOPMENT_JWT_SECRET {
                return Err(ConfigError::new(
                    "auth.jwt_secret",
                    "is the shipped development value; set your own secret in production",
                ));
            }
            if self.auth.jwt_secret.expose().len() < 32 {
                return Err(ConfigError::new(
                    "auth.jwt_secret",
                    "must be at least 32 bytes in production",
                ));
            }
        }
        let a = &self.auth;
        if crate::domain::Role::parse(&a.default_role).is_none() {
            return Err(ConfigError::new(
                "auth.default_role",
                "must be viewer, user or admin",
            ));
        }
        if a.subject_claim.is_empty() {
            return Err(ConfigError::new("auth.subject_claim", "must not be empty"));
        }
        if let Some(bad) = a
            .allowed_email_domains
            .iter()
            .find(|d| d.is_empty() || d.contains('@') || d.contains(char::is_whitespace))
        {
            return Err(ConfigError::new(
                "auth.allowed_email_domains",
                format!("`{bad}` is not a domain like example.com"),
            ));
        }
        if a.user_hash_pepper.is_empty() {
            return Err(ConfigError::new(
                "auth.user_hash_pepper",
                "must not be empty",
            ));
        }
        if self.is_production() && a.user_hash_pepper.expose() == DEVELOPMENT_USER_HASH_PEPPER {
            return Err(ConfigError::new(
                "auth.user_hash_pepper",
                "is the shipped development value; set your own (COLLOQUY_AUTH__USER_HASH_PEPPER) in production",
            ));
        }
        let url = &a.jwks_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::new("auth.jwks_url", "must be an http(s) URL"));
        }
        for alg in &a.jwks_algorithms {
            if !crate::auth::keys::is_asymmetric_algorithm(alg) {
                return Err(ConfigError::new(
                    "auth.jwks_algorithms",
                    format!(
                        "`{alg}` is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
                    ),
                ));
            }
        }
        if !a.public_key_pem_file.is_empty() {
            if !crate::auth::keys::is_asymmetric_algorithm(&a.public_key_algorithm) {
                return Err(ConfigError::new(
                    "auth.public_key_algorithm",
                    "must be an asymmetric algorithm such as RS256, ES256 or EdDSA",
                ));
            }
            if !std::path::Path::new(&a.public_key_pem_file).is_file() {
                return Err(ConfigError::new(
                    "auth.public_key_pem_file",
                    format!("`{}` is not a readable file", a.public_key_pem_file),
                ));
            }
        }
        if a.jwks_refresh_secs == 0 {
            return Err(ConfigError::new(
                "auth.jwks_refresh_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_rate_limit(&self) -> Result<(), ConfigError> {
        let r = &self.rate_limit;
        let mut quotas = vec![
            ("rate_limit.chat".to_owned(), r.chat),
            ("rate_limit.upload".to_owned(), r.upload),
            ("rate_limit.read".to_owned(), r.read),
            ("rate_limit.anonymous".to_owned(), r.anonymous),
        ];
        for (role, over) in &r.roles {
            if crate::domain::Role::parse(role).is_none() {
                return Err(ConfigError::new(
                    &format!("rate_limit.roles.{role}"),
                    "is not a role (viewer, user or admin)",
                ));
            }
            for (class, quota) in [
                ("chat", over.chat),
                ("upload", over.upload),
                ("read", over.read),
            ] {
                if let Some(q) = quota {
                    quotas.push((format!("rate_limit.roles.{role}.{class}"), q));
                }
            }
        }
        for (setting, q) in quotas {
            if q.capacity == 0 || q.per_minute == 0 {
                return Err(ConfigError::new(
                    &setting,
                    "capacity and per_minute must both be at least 1",
                ));
            }
        }
        if let Some(bad) = r
            .trusted_proxies
            .iter()
            .find(|p| crate::ratelimit::client_ip::parse_network(p).is_none())
        {
            return Err(ConfigError::new(
                "rate_limit.trusted_proxies",
                format!("`{bad}` is not an address or CIDR such as 10.0.0.0/8"),
            ));
        }
        if r.backend == RateLimitBackend::Redis && self.redis.url.is_empty() {
            return Err(ConfigError::new(
                "rate_limit.backend",
                "is redis but REDIS_URL is not set",
            ));
        }
        if r.max_tracked_keys == 0 || r.sweep_interval_secs == 0 {
            return Err(ConfigError::new(
                "rate_limit.max_tracked_keys",
                "max_tracked_keys and sweep_interval_secs must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_files(&self) -> Result<(), ConfigError> {
        let f = &self.files;
        if f.max_upload_bytes == 0 || f.max_files_per_upload == 0 || f.transfer_timeout_secs == 0 {
            return Err(ConfigError::new(
                "files.max_upload_bytes",
                "max_upload_bytes, max_files_per_upload and transfer_timeout_secs must be at least 1",
            ));
        }
        if let Some(bad) = f
            .allowed_types
            .iter()
            .find(|t| crate::files::sniff::Kind::of(t).is_none())
        {
            return Err(ConfigError::new(
                "files.allowed_types",
                format!("`{bad}` is not a type Colloquy can verify"),
            ));
        }
        if f.backend == FilesBackend::S3 && f.s3_bucket.is_empty() {
            return Err(ConfigError::new(
                "files.s3_bucket",
                "is required when files.backend is s3",
            ));
        }
        Ok(())
    }

    fn validate_providers(&self) -> Result<(), ConfigError> {
        let p = &self.providers;
        match p.default_model.split_once('/') {
            Some((provider, model)) if !provider.is_empty() && !model.is_empty() => {}
            _ => {
                return Err(ConfigError::new(
                    "providers.default_model",
                    "must be provider/model, e.g. mock/echo or openai/gpt-4o-mini",
                ));
            }
        }
        for (setting, url) in [
            ("providers.openai_base_url", &p.openai_base_url),
            ("providers.anthropic_base_url", &p.anthropic_base_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::new(setting, "must be an http(s) URL"));
            }
        }
        for (name, named) in &p.named {
            let setting = format!("providers.named.{name}");
            if matches!(name.as_str(), "mock" | "openai" | "anthropic")
                || name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::new(
                    &setting,
                    "needs a plain name other than mock, openai and anthropic",
                ));
            }
            if !(named.base_url.starts_with("http://") || named.base_url.starts_with("https://")) {
                return Err(ConfigError::new(
                    &format!("{setting}.base_url"),
                    "must be an http(s) URL",
                ));
            }
        }
        for (setting, v) in [
            ("providers.connect_timeout_secs", p.connect_timeout_secs),
            ("providers.request_timeout_secs", p.request_timeout_secs),
            (
                "providers.first_token_timeout_secs",
                p.first_token_timeout_secs,
            ),
            (
                "providers.stream_idle_timeout_secs",
                p.stream_idle_timeout_secs,
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::new(setting, "must be at least 1"));
            }
        }
        Ok(())
    }

    fn validate_cors(&self) -> Result<(), ConfigError> {
        if self.cors.allow_credentials {
            // Browsers refuse wildcards with credentials, and the CORS layer would panic.
            for (setting, list) in [
                ("cors.allowed_origins", &self.cors.allowed_origins),
                ("cors.allowed_methods", &self.cors.allowed_methods),
                ("cors.allowed_headers", &self.cors.allowed_headers),
                ("cors.expose_headers", &self.cors.expose_headers),
            ] {
                if list.iter().any(|v| v == "*") {
                    return Err(ConfigError::new(
                        "cors.allow_credentials",
                        format!("cannot be true while {setting} is \"*\"; list the values instead"),
                    ));
                }
            }
        }
        for origin in self.cors.allowed_origins.iter().filter(|o| *o != "*") {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && axum::http::HeaderValue::from_str(origin).is_ok();
            if !ok {
                return Err(ConfigError::new(
                    "cors.allowed_origins",
                    format!(
                        "`{origin}` is not an origin like https://chat.example.com (scheme and host, no path)"
                    ),
                ));
            }
        }
        for method in &self.cors.allowed_methods {
            if axum::http::Method::from_bytes(method.as_bytes()).is_err() {
                return Err(ConfigError::new(
                    "cors.allowed_methods",
                    format!("`{method}` is not an HTTP method"),
                ));
            }
        }
        for (setting, list) in [
            ("cors.allowed_headers", &self.cors.allowed_headers),
            ("cors.expose_headers", &self.cors.expose_headers),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|h| axum::http::HeaderName::from_bytes(h.as_bytes()).is_err())
            {
                return Err(ConfigError::new(
                    setting,
                    format!("`{bad}` is not a header name"),
                ));
            }
        }
        Ok(())
    }

    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            ConfigError::new(
                "server.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.server.listen
                ),
            )
        })
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.server.request_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_secs)
    }

    pub fn database_kind(&self) -> DatabaseKind {
        DatabaseKind::of(&self.database.url).unwrap_or(DatabaseKind::Sqlite)
    }

    /// The effective configuration as pretty JSON, secrets and URL passwords redacted.
    pub fn redacted_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// Environment values are typed like TOML scalars (numbers, booleans, arrays), else strings.
fn parse_env_value(raw: &str) -> figment::value::Value {
    raw.parse::<figment::value::Value>()
        .unwrap_or_else(|_| figment::value::Value::from(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_validate() {
        let env: &[(&str, &str)] = &[("COLLOQUY_CONFIG_DIR", "/nonexistent")];
        let config = Config::load_from(env).expect("defaults are valid");
        assert_eq!(config.server.listen, "127.0.0.1:8080");
        assert_eq!(config.database_kind(), DatabaseKind::Sqlite);
        assert_eq!(config.auth.jwt_secret.expose(), DEVELOPMENT_JWT_SECRET);
    }

    #[test]
    fn sectioned_and_fixed_env_names_override() {
        let env: &[(&str, &str)] = &[
            ("COLLOQUY_CONFIG_DIR", "/nonexistent"),
            ("COLLOQUY_SERVER__BODY_LIMIT_BYTES", "2048"),
            ("COLLOQUY_CORS__ALLOWED_ORIGINS", "[\"https://a.example\"]"),
            ("COLLOQUY_LISTEN", "0.0.0.0:9000"),
            ("COLLOQUY_JWT_SECRET", "123456"),
        ];
        let config = Config::load_from(env).unwrap();
        assert_eq!(config.server.body_limit_bytes, 2048);
        assert_eq!(config.cors.allowed_origins, vec!["https://a.example"]);
        assert_eq!(config.server.listen, "0.0.0.0:9000");
        assert_eq!(config.auth.jwt_secret.expose(), "123456");
    }

    #[test]
    fn unknown_setting_is_named() {
        let env: &[(&str, &str)] = &[
            ("COLLOQUY_CONFIG_DIR", "/nonexistent"),
            ("COLLOQUY_SERVER__LISTN", "x"),
        ];
        let err = Config::load_from(env).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:[redacted]@h:5432/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=pw&sslmode=require"),
            "postgres://h/db?user=u&password=[redacted]&sslmode=require"
        );
        let env: &[(&str, &str)] = &[
            ("COLLOQUY_CONFIG_DIR", "/nonexistent"),
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
            ("OPENAI_API_KEY", "sk-very-secret"),
        ];
        let json = Config::load_from(env).unwrap().redacted_json();
        assert!(!json.contains("hunter2") && !json.contains("sk-very-secret"));
    }
}
