//! Validation: the settings that would make the server unsafe or unable to work are
//! refused at start-up, each named the way an operator sets it.

use super::*;

impl Config {
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
        self.validate_retention()?;
        self.validate_budgets()?;
        self.validate_telemetry()?;
        self.metrics_listen()?;
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
        // SQLite takes at most 32,766 bound values per statement: 18 per usage row.
        if c.usage_batch_rows > 1000 {
            return Err(ConfigError::new("chat.usage_batch_rows", "at most 1000"));
        }
        if let Some(bad) = c.direct_models.iter().find(|m| {
            !m.split_once('/')
                .is_some_and(|(p, m)| !p.is_empty() && !m.is_empty())
        }) {
            return Err(ConfigError::new(
                "chat.direct_models",
                format!("`{bad}` is not provider/model"),
            ));
        }
        if let Some(bad) = c
            .direct_model_roles
            .iter()
            .find(|r| crate::domain::Role::parse(r).is_none())
        {
            return Err(ConfigError::new(
                "chat.direct_model_roles",
                format!("`{bad}` is not a role"),
            ));
        }
        if c.max_generation_secs > 86_400 {
            return Err(ConfigError::new(
                "chat.max_generation_secs",
                "at most 86400 (a day)",
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

    /// The metrics' own address, when one is set.
    pub fn metrics_listen(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let listen = self.metrics.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            ConfigError::new("metrics.listen", "must be host:port, e.g. 127.0.0.1:9100")
        })
    }

    fn validate_telemetry(&self) -> Result<(), ConfigError> {
        let t = &self.telemetry;
        let endpoint = &t.otlp_endpoint;
        if !(endpoint.is_empty()
            || endpoint.starts_with("http://")
            || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL (or empty)",
            ));
        }
        if !(0.0..=1.0).contains(&t.otlp_sample_ratio) {
            return Err(ConfigError::new(
                "telemetry.otlp_sample_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        if t.service_name.is_empty() {
            return Err(ConfigError::new(
                "telemetry.service_name",
                "must not be empty",
            ));
        }
        Ok(())
    }

    fn validate_budgets(&self) -> Result<(), ConfigError> {
        let b = &self.budgets;
        // The same bound as an admin's setting: a billion dollars.
        if !(-1..=1_000_000_000_000_000_000).contains(&b.default_monthly_nano_usd) {
            return Err(ConfigError::new(
                "budgets.default_monthly_nano_usd",
                "must be -1 (no cap) or a cap from 0 to 1000000000000000000",
            ));
        }
        if b.cache_secs == 0 || b.cache_secs > 3600 {
            return Err(ConfigError::new(
                "budgets.cache_secs",
                "must be between 1 and 3600",
            ));
        }
        // The same bounds as a request's max_tokens.
        if b.default_max_tokens == 0 || b.default_max_tokens > 1_000_000 {
            return Err(ConfigError::new(
                "budgets.default_max_tokens",
                "must be between 1 and 1000000",
            ));
        }
        if b.backend == RateLimitBackend::Redis && self.redis.url.is_empty() {
            return Err(ConfigError::new(
                "budgets.backend",
                "\"redis\" needs redis.url (REDIS_URL)",
            ));
        }
        Ok(())
    }

    fn validate_retention(&self) -> Result<(), ConfigError> {
        // Days become a time span: keep it within what a date can hold.
        let r = &self.retention;
        if r.interval_secs == 0 || r.interval_secs > 7 * 86_400 {
            return Err(ConfigError::new(
                "retention.interval_secs",
                "must be between 1 and 604800 (a week)",
            ));
        }
        for (setting, days) in [
            ("retention.archive_after_days", r.archive_after_days),
            (
                "retention.purge_deleted_after_days",
                r.purge_deleted_after_days,
            ),
        ] {
            if days > 36_500 {
                return Err(ConfigError::new(setting, "at most 36500 (a century)"));
            }
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
}
