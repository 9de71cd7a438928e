//! Rate limiting over real connections, on the in-memory backend and on real Redis: bursts,
//! refill, per-user and per-IP buckets, trusted proxies, two instances sharing Redis, and a
//! Redis outage (through a TCP proxy this test can cut) with both failure policies.

use std::time::Duration;

use colloquy::domain::Role;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, TestApp, assert_envelope, reachable_redis};

#[derive(Debug, Clone, Copy)]
enum Limiter {
    Memory,
    Redis,
}

/// A SQLite app with the given limiter backend; None when Redis is wanted but absent
/// outside CI (the helper fails under CI=true).
async fn app(limiter: Limiter, overrides: &[(&str, &str)]) -> Option<TestApp> {
    let mut env: Vec<(&str, &str)> = overrides.to_vec();
    let redis;
    match limiter {
        Limiter::Memory => env.push(("COLLOQUY_RATE_LIMIT__BACKEND", "memory")),
        Limiter::Redis => {
            redis = reachable_redis().await?;
            env.push(("COLLOQUY_RATE_LIMIT__BACKEND", "redis"));
            env.push(("REDIS_URL", redis.as_str()));
        }
    }
    TestApp::spawn_with(Backend::Sqlite, &env).await
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

macro_rules! on_both_limiters {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$name(super::Limiter::Memory).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn redis() {
                    super::$name(super::Limiter::Redis).await
                }
            }
        )*
    };
}

/// The same requests give the same headers on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_redis_report_alike() {
    let limits = [
        ("COLLOQUY_RATE_LIMIT__READ__CAPACITY", "3"),
        ("COLLOQUY_RATE_LIMIT__READ__PER_MINUTE", "6"),
    ];
    let mut seen = Vec::new();
    for limiter in [Limiter::Memory, Limiter::Redis] {
        let Some(app) = app(limiter, &limits).await else {
            return;
        };
        let alice = app.token("alice", Role::User);
        let mut rows = Vec::new();
        for _ in 0..5 {
            let r = app
                .get("/v1/api-keys")
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap();
            rows.push((
                r.status().as_u16(),
                header(&r, "ratelimit-limit"),
                header(&r, "ratelimit-remaining"),
                header(&r, "ratelimit-reset"),
                header(&r, "retry-after"),
            ));
        }
        seen.push(rows);
    }
    assert_eq!(seen[0], seen[1], "memory vs redis");
    assert_eq!(seen[0][3].0, 429);
    // Full again after the wait plus the two other intervals (10 s each).
    assert_eq!(seen[0][3].3.as_deref(), Some("30"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_header_counts_and_every_line_of_it() {
    let Some(app) = app(
        Limiter::Memory,
        &[
            ("COLLOQUY_RATE_LIMIT__ANONYMOUS__CAPACITY", "1"),
            ("COLLOQUY_RATE_LIMIT__ANONYMOUS__PER_MINUTE", "1"),
            ("COLLOQUY_RATE_LIMIT__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ],
    )
    .await
    else {
        return;
    };
    // The proxy appends to X-Forwarded-For; a client-written Forwarded is not believed.
    for n in 0..2 {
        let response = app
            .get("/v1/api-keys")
            .header("forwarded", format!("for=192.0.2.{n}"))
            .header("x-forwarded-for", "198.51.100.20")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            if n == 0 { 401 } else { 429 },
            "request {n}"
        );
    }
    // A proxy that adds a second line rather than appending: the last line is its own.
    for n in 0..2 {
        let response = app
            .get("/v1/api-keys")
            .header("x-forwarded-for", format!("192.0.2.{n}"))
            .header("x-forwarded-for", "198.51.100.30")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            if n == 0 { 401 } else { 429 },
            "line request {n}"
        );
    }
}

on_both_limiters!(
    burst_then_429,
    refill_over_time,
    users_do_not_share,
    anonymous_limited_per_ip,
    forwarded_for_only_from_trusted_proxies
);

async fn burst_then_429(limiter: Limiter) {
    let Some(app) = app(
        limiter,
        &[
            ("COLLOQUY_RATE_LIMIT__READ__CAPACITY", "3"),
            ("COLLOQUY_RATE_LIMIT__READ__PER_MINUTE", "6"),
        ],
    )
    .await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    for remaining in ["2", "1", "0"] {
        let response = app
            .get("/v1/api-keys")
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(
            header(&response, "ratelimit-remaining").as_deref(),
            Some(remaining)
        );
        assert_eq!(
            header(&response, "x-ratelimit-remaining").as_deref(),
            Some(remaining)
        );
        let reset: u64 = header(&response, "ratelimit-reset")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            reset <= 30,
            "reset within the refill of 3 at 6/min: {reset}"
        );
    }
    let refused = app
        .get("/v1/api-keys")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let retry: u64 = header(&refused, "retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!(
        (1..=10).contains(&retry),
        "one request back within 10 s at 6/min: {retry}"
    );
    assert_eq!(
        header(&refused, "ratelimit-remaining").as_deref(),
        Some("0")
    );
    let body = assert_envelope(refused, 429, "rate_limited").await;
    assert_eq!(body["error"]["details"]["retry_after_secs"], retry);
}

async fn refill_over_time(limiter: Limiter) {
    // 2 at once, one back every 100 ms: short windows instead of long sleeps.
    let Some(app) = app(
        limiter,
        &[
            ("COLLOQUY_RATE_LIMIT__READ__CAPACITY", "2"),
            ("COLLOQUY_RATE_LIMIT__READ__PER_MINUTE", "600"),
        ],
    )
    .await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    for _ in 0..2 {
        assert_eq!(
            app.get("/v1/api-keys")
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        app.get("/v1/api-keys")
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let response = app
        .get("/v1/api-keys")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "refilled");
}

async fn users_do_not_share(limiter: Limiter) {
    let Some(app) = app(
        limiter,
        &[
            ("COLLOQUY_RATE_LIMIT__READ__CAPACITY", "2"),
            ("COLLOQUY_RATE_LIMIT__READ__PER_MINUTE", "1"),
            // Admins get a bigger bucket.
            ("COLLOQUY_RATE_LIMIT__ROLES__ADMIN__READ__CAPACITY", "5"),
            ("COLLOQUY_RATE_LIMIT__ROLES__ADMIN__READ__PER_MINUTE", "1"),
        ],
    )
    .await
    else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let bob = app.token("bob", Role::User);
    let root = app.token("root", Role::Admin);
    for _ in 0..2 {
        assert_eq!(
            app.get("/v1/api-keys")
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(
        app.get("/v1/api-keys")
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    assert_eq!(
        app.get("/v1/api-keys")
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "bob has his own bucket"
    );
    let response = app
        .get("/v1/api-keys")
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&response, "ratelimit-limit").as_deref(),
        Some("5"),
        "role override"
    );
    // A chat-class bucket is separate from the read bucket (class by route template).
    assert_eq!(
        colloquy::ratelimit::Class::of_route("POST", "/v1/chat/send"),
        colloquy::ratelimit::Class::Chat
    );
}

async fn anonymous_limited_per_ip(limiter: Limiter) {
    let Some(app) = app(
        limiter,
        &[
            ("COLLOQUY_RATE_LIMIT__ANONYMOUS__CAPACITY", "3"),
            ("COLLOQUY_RATE_LIMIT__ANONYMOUS__PER_MINUTE", "1"),
            ("COLLOQUY_RATE_LIMIT__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
        ],
    )
    .await
    else {
        return;
    };
    let from = |ip: &'static str| app.get("/v1/api-keys").header("x-forwarded-for", ip);
    // Missing and bad credentials spend from the address's bucket.
    for auth in [None, Some("Bearer garbage"), Some("Bearer ck_nope")] {
        let mut request = from("203.0.113.7");
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert!(header(&response, "ratelimit-remaining").is_some());
    }
    let response = from("203.0.113.7")
        .header("authorization", "Bearer garbage")
        .send()
        .await
        .unwrap();
    assert!(header(&response, "retry-after").is_some());
    assert_envelope(response, 429, "rate_limited").await;
    // Until it refills, that address gets no verification that costs I/O: bad or unknown
    // credentials are refused at once (no key lookup)...
    let unknown_key = format!("ck_{}", "A".repeat(43));
    let response = from("203.0.113.7")
        .bearer_auth(&unknown_key)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 429, "rate_limited").await;
    // ...while a good token, checked in memory, still gets through.
    let token = app.token("alice", Role::User);
    assert_eq!(
        from("203.0.113.7")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Another address is unaffected, and so are authenticated requests from it.
    assert_eq!(from("198.51.100.1").send().await.unwrap().status(), 401);
    assert_eq!(
        from("198.51.100.1")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn forwarded_for_only_from_trusted_proxies(limiter: Limiter) {
    let limits = [
        ("COLLOQUY_RATE_LIMIT__ANONYMOUS__CAPACITY", "2"),
        ("COLLOQUY_RATE_LIMIT__ANONYMOUS__PER_MINUTE", "1"),
    ];
    // Untrusted peer: a fresh X-Forwarded-For per request does not buy a fresh bucket.
    let Some(untrusted) = app(limiter, &limits).await else {
        return;
    };
    let statuses: Vec<u16> = futures_util::future::join_all((0..4).map(|n| {
        untrusted
            .get("/v1/api-keys")
            .header("x-forwarded-for", format!("192.0.2.{n}"))
            .send()
    }))
    .await
    .into_iter()
    .map(|r| r.unwrap().status().as_u16())
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "spoofed header ignored: {statuses:?}"
    );

    // Trusted proxy: each forwarded client has its own bucket.
    let mut trusted_env = limits.to_vec();
    trusted_env.push(("COLLOQUY_RATE_LIMIT__TRUSTED_PROXIES", "[\"127.0.0.0/8\"]"));
    let Some(trusted) = app(limiter, &trusted_env).await else {
        return;
    };
    for n in 0..4 {
        let response = trusted
            .get("/v1/api-keys")
            .header("x-forwarded-for", format!("192.0.2.{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "client {n} has its own bucket");
    }
    // The right-most untrusted address counts, not a spoofed left-most one.
    for n in 0..3 {
        let response = trusted
            .get("/v1/api-keys")
            .header("x-forwarded-for", format!("10.9.9.{n}, 198.51.100.9"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            if n < 2 { 401 } else { 429 },
            "request {n}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_redis_limit() {
    let Some(redis) = reachable_redis().await else {
        return;
    };
    let prefix = format!("test:shared:{}:", uuid::Uuid::now_v7().simple());
    let env = [
        ("COLLOQUY_RATE_LIMIT__BACKEND", "redis"),
        ("REDIS_URL", redis.as_str()),
        ("COLLOQUY_RATE_LIMIT__REDIS_PREFIX", prefix.as_str()),
        ("COLLOQUY_RATE_LIMIT__READ__CAPACITY", "4"),
        ("COLLOQUY_RATE_LIMIT__READ__PER_MINUTE", "1"),
    ];
    let Some(first) = TestApp::spawn_with(Backend::Sqlite, &env).await else {
        return;
    };
    let second = TestApp::spawn_on(first.db.clone(), &env).await;
    let alice = first.token("alice", Role::User);
    let mut admitted = 0;
    for n in 0..8 {
        let app = if n % 2 == 0 { &first } else { &second };
        if app
            .get("/v1/api-keys")
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 4, "one bucket across both instances");
}

/// A TCP proxy in front of Redis that the test can cut and restore on the same port.
struct Cuttable {
    port: u16,
    target: String,
    cut: CancellationToken,
}

impl Cuttable {
    async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            target: target.to_owned(),
            cut: CancellationToken::new(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (cut, target) = (self.cut.clone(), self.target.clone());
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    () = cut.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => return },
                };
                let (cut, target) = (cut.clone(), target.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        () = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
    }

    /// Closes the listener and every proxied connection: Redis is gone.
    fn cut(&mut self) {
        self.cut.cancel();
    }

    /// Listens again on the same port: Redis is back.
    async fn restore(&mut self) {
        self.cut = CancellationToken::new();
        let mut listener = None;
        for _ in 0..50 {
            if let Ok(l) = TcpListener::bind(("127.0.0.1", self.port)).await {
                listener = Some(l);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.serve(listener.expect("rebind the proxy port"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_follows_the_policy_then_recovers() {
    let Some(redis) = reachable_redis().await else {
        return;
    };
    let target = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let mut proxy = Cuttable::start(&target).await;
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let env = |policy: &'static str| {
        vec![
            ("COLLOQUY_RATE_LIMIT__BACKEND", "redis"),
            ("REDIS_URL", url.clone().leak() as &str),
            ("COLLOQUY_RATE_LIMIT__REDIS_FAILURE", policy),
        ]
    };
    let Some(open) = TestApp::spawn_with(Backend::Sqlite, &env("open")).await else {
        return;
    };
    let closed = TestApp::spawn_on(open.db.clone(), &env("closed")).await;
    let alice = open.token("alice", Role::User);
    for app in [&open, &closed] {
        let response = app
            .get("/v1/api-keys")
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            header(&response, "ratelimit-remaining").is_some(),
            "limited through Redis"
        );
    }

    proxy.cut();
    // Fail open: admitted, without bucket headers (nothing was counted).
    let response = open
        .get("/v1/api-keys")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(header(&response, "ratelimit-remaining").is_none());
    // Fail closed: refused with 503 in the envelope.
    let response = closed
        .get("/v1/api-keys")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 503, "rate_limiter_unavailable").await;

    // Redis returns: both recover by themselves within a few seconds.
    proxy.restore().await;
    for app in [&open, &closed] {
        let mut recovered = false;
        for _ in 0..50 {
            let response = app
                .get("/v1/api-keys")
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap();
            if response.status() == 200 && header(&response, "ratelimit-remaining").is_some() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(recovered, "the limiter reconnects to Redis on its own");
    }
}
