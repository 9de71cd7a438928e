//! Production refuses unsafe settings, naming the setting; development runs on defaults.

use colloquy::config::{Config, DEVELOPMENT_JWT_SECRET, DEVELOPMENT_USER_HASH_PEPPER};

const STRONG: &str = "a-production-secret-of-at-least-32-bytes!";

fn load(extra: &[(&'static str, &'static str)]) -> Result<Config, colloquy::config::ConfigError> {
    let mut env = vec![
        ("COLLOQUY_CONFIG_DIR", "/nonexistent"),
        ("COLLOQUY_ENV", "production"),
        ("COLLOQUY_JWT_SECRET", STRONG),
        (
            "DATABASE_URL",
            "postgres://colloquy:pw@db.internal/colloquy",
        ),
        ("COLLOQUY_AUTH__USER_HASH_PEPPER", "a-production-pepper"),
    ];
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k, v));
    }
    Config::load_from(env.as_slice())
}

type Refusal = (
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

#[test]
fn production_refusals_name_the_setting() {
    // (overrides, the setting the error must name, why)
    let cases: &[Refusal] = &[
        (
            &[("COLLOQUY_CHAT__USAGE_BATCH_ROWS", "1001")],
            "chat.usage_batch_rows",
            "more rows per INSERT than SQLite takes bound values",
        ),
        (
            &[("COLLOQUY_JWT_SECRET", "")],
            "COLLOQUY_JWT_SECRET",
            "unset secret falls back to the development one",
        ),
        (
            &[
                ("COLLOQUY_JWT_SECRET", ""),
                ("COLLOQUY_AUTH__JWT_SECRET", "\"\""),
            ],
            "auth.jwt_secret",
            "empty secret",
        ),
        (
            &[("COLLOQUY_JWT_SECRET", "short-secret")],
            "COLLOQUY_JWT_SECRET",
            "secret under 32 bytes",
        ),
        (
            &[("COLLOQUY_JWT_SECRET", DEVELOPMENT_JWT_SECRET)],
            "COLLOQUY_JWT_SECRET",
            "shipped development secret",
        ),
        (
            &[("DATABASE_URL", "sqlite://data/colloquy.db")],
            "DATABASE_URL",
            "SQLite without opt-in",
        ),
        (
            &[
                ("COLLOQUY_CORS__ALLOWED_ORIGINS", "[\"*\"]"),
                ("COLLOQUY_CORS__ALLOW_CREDENTIALS", "true"),
            ],
            "cors.allow_credentials",
            "any origin with credentials",
        ),
        (
            &[(
                "COLLOQUY_AUTH__USER_HASH_PEPPER",
                DEVELOPMENT_USER_HASH_PEPPER,
            )],
            "auth.user_hash_pepper",
            "shipped development pepper",
        ),
        (
            &[
                ("COLLOQUY_CORS__ALLOWED_HEADERS", "[\"*\"]"),
                ("COLLOQUY_CORS__ALLOW_CREDENTIALS", "true"),
            ],
            "cors.allow_credentials",
            "any header with credentials",
        ),
        (
            &[("REDIS_URL", "rediss://cache.internal:6380")],
            "REDIS_URL",
            "TLS Redis not supported yet",
        ),
        (
            &[("COLLOQUY_AUTH__JWKS_ALGORITHMS", "[\"HS256\"]")],
            "auth.jwks_algorithms",
            "symmetric algorithm from a JWKS",
        ),
        (
            &[("COLLOQUY_AUTH__ALLOWED_EMAIL_DOMAINS", "[\"@\"]")],
            "auth.allowed_email_domains",
            "not a domain",
        ),
        (
            &[("COLLOQUY_AUTH__PUBLIC_KEY_PEM_FILE", "/nonexistent/key.pem")],
            "auth.public_key_pem_file",
            "missing PEM file",
        ),
        (
            &[("COLLOQUY_LISTEN", "not-an-address")],
            "COLLOQUY_LISTEN",
            "bad listen address",
        ),
        (
            &[("DATABASE_URL", "mysql://x")],
            "DATABASE_URL",
            "unsupported database",
        ),
        (
            &[("COLLOQUY_SERVER__BODY_LIMT_BYTES", "5")],
            "body_limt_bytes",
            "misspelt setting",
        ),
        (
            &[("COLLOQUY_SERVER__BODY_LIMIT_BYTES", "lots")],
            "body_limit_bytes",
            "wrong type",
        ),
    ];
    assert!(
        load(&[]).is_ok(),
        "the baseline is a valid production config"
    );
    for (overrides, setting, why) in cases {
        let err = load(overrides).expect_err(why).to_string();
        assert!(
            err.contains(setting),
            "{why}: `{err}` should name {setting}"
        );
    }
}

#[test]
fn sqlite_in_production_with_explicit_opt_in() {
    let config = load(&[
        ("DATABASE_URL", "sqlite://data/colloquy.db"),
        ("COLLOQUY_DATABASE__ALLOW_SQLITE_IN_PRODUCTION", "true"),
    ])
    .expect("opted in");
    assert!(config.is_production());
}

#[test]
fn development_accepts_the_defaults() {
    let env: &[(&str, &str)] = &[("COLLOQUY_CONFIG_DIR", "/nonexistent")];
    let config = Config::load_from(env).unwrap();
    assert!(!config.is_production());
    assert!(config.database.url.starts_with("sqlite://"));
}

#[test]
fn environment_file_overrides_defaults_and_env_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("staging.toml"),
        "[server]\nrequest_timeout_secs = 7\nbody_limit_bytes = 2048\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let env: &[(&str, &str)] = &[
        ("COLLOQUY_CONFIG_DIR", path),
        ("COLLOQUY_ENV", "staging"),
        ("COLLOQUY_SERVER__BODY_LIMIT_BYTES", "4096"),
    ];
    let config = Config::load_from(env).unwrap();
    assert_eq!(config.server.request_timeout_secs, 7);
    assert_eq!(config.server.body_limit_bytes, 4096);
}
