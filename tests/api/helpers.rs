//! TestApp: the real app on 127.0.0.1:0 over a fresh database (a new Postgres database or
//! a temporary SQLite file), with request helpers. Postgres comes from TEST_DATABASE_URL
//! (default: the local server); under CI=true its absence fails the test, never skips it.

use std::sync::Arc;

use colloquy::config::Config;
use colloquy::domain::Role;
use colloquy::state::AppState;
use colloquy::store::{self, Store};
use sqlx::Connection;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const DEFAULT_TEST_REDIS_URL: &str = "redis://127.0.0.1:6379";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

pub fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_TEST_REDIS_URL.to_owned())
}

/// The test Redis URL when Redis answers; None (skip, loudly) outside CI when it does not.
pub async fn reachable_redis() -> Option<String> {
    let url = test_redis_url();
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), ping).await {
        Ok(Ok(_)) => Some(url),
        _ if in_ci() => panic!("CI=true and Redis is unreachable at TEST_REDIS_URL ({url})"),
        _ => {
            eprintln!(
                "SKIPPED: Redis unreachable at TEST_REDIS_URL ({url}); set it or start Redis"
            );
            None
        }
    }
}

/// A database made for one test and dropped after it.
pub struct TestDatabase {
    pub url: String,
    pub backend: Backend,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// None when Postgres is unreachable outside CI (the test is then skipped, loudly).
    pub async fn create(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/colloquy.db", dir.path().display());
                Some(Self {
                    url,
                    backend,
                    pg_name: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin_url = admin_database_url();
                let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
                    Ok(c) => c,
                    Err(e) if !in_ci() => {
                        eprintln!(
                            "SKIPPED: Postgres unreachable at TEST_DATABASE_URL ({e}); set it or start Postgres"
                        );
                        return None;
                    }
                    Err(e) => {
                        panic!("CI=true and Postgres is unreachable at TEST_DATABASE_URL: {e}")
                    }
                };
                let name = format!("colloquy_test_{}", Uuid::new_v4().simple());
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let _ = admin.close().await;
                Some(Self {
                    url: with_database(&admin_url, &name),
                    backend,
                    pg_name: Some(name),
                    _dir: None,
                })
            }
        }
    }

    /// Drops the Postgres database now, while the app may still hold connections.
    pub async fn sabotage(&self) {
        if let Some(name) = &self.pg_name {
            drop_database(name).await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside any async context guarantee, so use a runtime of its own.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_database(&name));
                }
            })
            .join();
        }
    }
}

async fn drop_database(name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_database_url()).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
        let _ = admin.close().await;
    }
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// An HTTP client for tests: no redirects followed, the process's TLS provider installed.
pub fn client() -> reqwest::Client {
    colloquy::tls::ensure_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The configuration a test app runs with: defaults, the test database, plus overrides.
pub fn test_config(db_url: &str, overrides: &[(&str, &str)]) -> Config {
    // Each app gets its own Redis key space; roomy limits unless a test sets its own.
    let prefix = format!("test:{}:", Uuid::now_v7().simple());
    let budget_prefix = format!("{prefix}budget:");
    let mut env: Vec<(&str, &str)> = vec![
        ("COLLOQUY_CONFIG_DIR", "/nonexistent"),
        ("DATABASE_URL", db_url),
        ("COLLOQUY_DATABASE__MAX_CONNECTIONS", "4"),
        ("COLLOQUY_SERVER__SHUTDOWN_GRACE_SECS", "5"),
        ("COLLOQUY_RATE_LIMIT__REDIS_PREFIX", prefix.as_str()),
        ("COLLOQUY_BUDGETS__REDIS_PREFIX", budget_prefix.as_str()),
        ("COLLOQUY_RATE_LIMIT__ANONYMOUS__CAPACITY", "1000"),
        ("COLLOQUY_RATE_LIMIT__READ__CAPACITY", "1000"),
        ("COLLOQUY_RATE_LIMIT__UPLOAD__CAPACITY", "1000"),
        ("COLLOQUY_RATE_LIMIT__CHAT__CAPACITY", "1000"),
        // The mock at a fast pace (the shipped 40 ms a token is for people watching).
        ("COLLOQUY_PROVIDERS__MOCK_TOKEN_INTERVAL_MS", "5"),
    ];
    // Later entries win: a test's overrides replace the defaults above.
    env.retain(|(k, _)| !overrides.iter().any(|(o, _)| o == k));
    env.extend_from_slice(overrides);
    Config::load_from(env.as_slice()).expect("test config is valid")
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub db: Arc<TestDatabase>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, &[]).await
    }

    pub async fn spawn_with(backend: Backend, overrides: &[(&str, &str)]) -> Option<Self> {
        let db = Arc::new(TestDatabase::create(backend).await?);
        Some(Self::spawn_on(db, overrides).await)
    }

    /// Another app instance on an existing database (several instances, one database).
    pub async fn spawn_on(db: Arc<TestDatabase>, overrides: &[(&str, &str)]) -> Self {
        let config = test_config(&db.url, overrides);
        let store = store::connect(&config.database)
            .await
            .expect("connect test database");
        store.migrate().await.expect("migrate test database");
        let state = AppState::new(config.clone(), store.clone()).expect("state");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("local addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = colloquy::server::serve(listener, state, async {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            address,
            client: client(),
            config,
            store,
            db,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    /// GET with a bearer token, expecting 200 and JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let response = self.get(path).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// A bearer token for `sub` with `role`, signed with the app's secret. Every such user
    /// has the same email, so the same usage hash: see `token_for` where that matters.
    pub fn token(&self, sub: &str, role: Role) -> String {
        self.token_for(sub, Some("tester@example.com"), role)
    }

    /// A bearer token for `sub` with an email of its own (or none) and `role`.
    pub fn token_for(&self, sub: &str, email: Option<&str>, role: Role) -> String {
        colloquy::auth::jwt::mint(
            &self.config.auth,
            &colloquy::auth::jwt::TokenRequest {
                sub,
                email,
                role,
                ttl_secs: 600,
            },
        )
        .expect("mint token")
    }

    /// Uploads files as one multipart request.
    pub async fn upload(&self, token: &str, parts: &[Part<'_>]) -> reqwest::Response {
        let (content_type, body) = multipart(parts);
        self.post("/v1/files")
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

/// Reads a response's JSON body and checks it is the error envelope with `code`.
pub async fn assert_envelope(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status for {code}");
    let request_id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id on error")
        .to_str()
        .unwrap()
        .to_owned();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        ct.as_deref(),
        Some("application/json"),
        "content type for {code}"
    );
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["error"]["request_id"], request_id.as_str(), "{body}");
    body
}

/// Generates `NAME::sqlite` and `NAME::postgres` tests from `async fn NAME(backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// An S3-compatible server for the suite: moto's, started once per test binary on a free
/// port (and told to exit by itself after a while, so no run leaves it behind). None
/// outside CI when moto is not installed; under CI=true its absence fails.
pub async fn s3_endpoint() -> Option<String> {
    static ENDPOINT: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();
    ENDPOINT
        .get_or_init(|| async {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .ok()?;
            let spawned = std::process::Command::new("timeout")
                .args([
                    "1800",
                    "moto_server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            if let Err(e) = spawned {
                if in_ci() {
                    panic!("CI=true and moto_server could not start: {e}");
                }
                eprintln!("SKIPPED: S3 tests need moto (pip install 'moto[server]'): {e}");
                return None;
            }
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Some(format!("http://127.0.0.1:{port}"));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            if in_ci() {
                panic!("CI=true and moto_server did not come up (pip install 'moto[server]')");
            }
            eprintln!("SKIPPED: moto_server did not come up; pip install 'moto[server]'");
            None
        })
        .await
        .clone()
}

/// Where files live in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Local,
    S3,
}

/// The config overrides for a fresh, empty file store of that kind: a temp directory, or a
/// new bucket on the suite's S3 server. None when S3 is unavailable outside CI.
pub async fn storage_overrides(
    storage: Storage,
    dir: &std::path::Path,
) -> Option<Vec<(String, String)>> {
    match storage {
        Storage::Local => Some(vec![
            ("COLLOQUY_FILES__BACKEND".into(), "local".into()),
            (
                "COLLOQUY_FILES__LOCAL_DIR".into(),
                dir.display().to_string(),
            ),
        ]),
        Storage::S3 => {
            let endpoint = s3_endpoint().await?;
            let bucket = format!("test-{}", Uuid::new_v4().simple());
            let created = client()
                .put(format!("{endpoint}/{bucket}"))
                .send()
                .await
                .expect("create bucket");
            assert!(
                created.status().is_success(),
                "create bucket: {}",
                created.status()
            );
            Some(vec![
                ("COLLOQUY_FILES__BACKEND".into(), "s3".into()),
                ("COLLOQUY_FILES__S3_BUCKET".into(), bucket),
                ("COLLOQUY_FILES__S3_ENDPOINT".into(), endpoint),
                ("COLLOQUY_FILES__S3_ALLOW_HTTP".into(), "true".into()),
                ("COLLOQUY_FILES__S3_ACCESS_KEY_ID".into(), "testing".into()),
                (
                    "COLLOQUY_FILES__S3_SECRET_ACCESS_KEY".into(),
                    "testing".into(),
                ),
            ])
        }
    }
}

/// Generates `NAME::{sqlite,postgres}_{local,s3}` tests from `async fn NAME(backend, storage)`.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::{Backend, Storage};
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_local() { super::$name(Backend::Sqlite, Storage::Local).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite_s3() { super::$name(Backend::Sqlite, Storage::S3).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_local() { super::$name(Backend::Postgres, Storage::Local).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres_s3() { super::$name(Backend::Postgres, Storage::S3).await }
            }
        )*
    };
}

/// One number from the test database, by raw SQL (counting rows a test expects).
pub async fn count(db: &TestDatabase, sql: &'static str) -> i64 {
    match db.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.expect("connect");
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&mut c)
                .await
                .expect("count")
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url)
                .await
                .expect("connect");
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&mut c)
                .await
                .expect("count")
        }
    }
}

/// Polls `count` until it reaches `want` (the usage writer flushes in the background), then
/// lets it settle and counts again, so a late duplicate shows up as a mismatch.
pub async fn eventually_count(db: &TestDatabase, sql: &'static str, want: i64) -> i64 {
    for _ in 0..100 {
        if count(db, sql).await >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    count(db, sql).await
}

/// One multipart part: (filename, content type, bytes).
pub type Part<'a> = (Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart/form-data body built by hand, so tests can send what a client library would
/// refuse to (hostile types, names). Returns the Content-Type and the body.
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "colloquy-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (i, (name, ct, bytes)) in parts.iter().enumerate() {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let filename = name
            .map(|n| format!("; filename=\"{n}\""))
            .unwrap_or_default();
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"file{i}\"{filename}\r\n").as_bytes(),
        );
        if let Some(ct) = ct {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
