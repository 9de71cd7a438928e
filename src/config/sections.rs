//! The configuration's sections, one struct each; every field is documented in
//! `config/default.toml`.

use serde::{Deserialize, Serialize};

use super::secret::{Secret, serialize_redacted_url};

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
    /// provider/model that names new conversations; empty: their first message does.
    pub title_model: String,
    /// Models (provider/model) that `/v1/chat/completions` callers may name directly,
    /// besides specialist ids: no system prompt of ours, the caller's own.
    pub direct_models: Vec<String>,
    /// Roles that may use `direct_models`; empty: every role that may chat.
    pub direct_model_roles: Vec<String>,
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
pub struct MetricsConfig {
    /// An address of its own for `GET /metrics` (e.g. "127.0.0.1:9100"); empty: none.
    pub listen: String,
    /// A bearer token for `GET /metrics` on the main address; empty: not served there.
    pub token: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetsConfig {
    /// Everyone's monthly cap in nano-USD unless an admin set theirs; -1: none.
    pub default_monthly_nano_usd: i64,
    /// `max_tokens` of a capped call that names none, so its worst case is bounded.
    pub default_max_tokens: u32,
    /// How long a user's cap is cached per instance.
    pub cache_secs: u64,
    pub backend: RateLimitBackend,
    pub redis_failure: RedisFailure,
    pub redis_prefix: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Archive conversations with no new message for this many days; 0: never.
    pub archive_after_days: u32,
    /// Delete soft-deleted conversations for good this many days after; 0: never.
    pub purge_deleted_after_days: u32,
    /// How often the job runs; one instance at a time (a lease in the database).
    pub interval_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub format: LogFormat,
    pub filter: String,
    /// An OTLP/HTTP collector's base URL; empty: no trace export.
    pub otlp_endpoint: String,
    pub otlp_protocol: OtlpProtocol,
    pub service_name: String,
    pub otlp_sample_ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}
