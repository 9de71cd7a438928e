//! Configuration: `config/default.toml` (compiled in), then `config/$COLLOQUY_ENV.toml`,
//! then environment variables; validated once at start-up. The only reader of the environment.

mod secret;
mod sections;
mod validate;

pub use secret::{Secret, redact_url};
pub use sections::*;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};

/// The defaults, shipped inside the binary so a bare `colloquy` runs anywhere.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

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
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
    ("OTEL_SERVICE_NAME", "telemetry.service_name"),
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
    pub retention: RetentionConfig,
    pub metrics: MetricsConfig,
    pub budgets: BudgetsConfig,
}

fn default_environment() -> String {
    "development".to_owned()
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
