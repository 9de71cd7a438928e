//! Monthly budgets: a cap that holds under 50 concurrent calls on one instance (both
//! databases) and on two instances sharing Redis; streamed calls settle at their real cost;
//! spend recorded before start-up counts; the admin routes; a Redis outage follows the
//! policy.

use std::time::Duration;

use colloquy::domain::{Role, UsageRecord, new_id};
use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::fakes::{self, Reply, Upstream};
use crate::helpers::{Backend, TestApp, assert_envelope, count, reachable_redis};
use crate::on_both_backends;

on_both_backends!(
    a_cap_holds_under_concurrency,
    streamed_calls_settle_at_their_cost,
    spend_on_record_counts,
    admins_set_caps
);

const MAX_TOKENS: u64 = 1000;
/// What the fake upstream reports for each call: 10 prompt tokens and all 1000 allowed
/// output tokens of gpt-4o-mini ($0.15 and $0.60 per million) = 1,500 + 600,000 nano-USD.
const PROMPT_TOKENS: u64 = 10;
const CALL_COST: i64 = 601_500;

fn env<'a>(up: &'a Upstream, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("OPENAI_BASE_URL", up.url.as_str()),
        ("OPENAI_API_KEY", "sk-test"),
        ("COLLOQUY_DEFAULT_MODEL", "openai/gpt-4o-mini"),
        ("COLLOQUY_PROVIDERS__MAX_RETRIES", "0"),
        ("COLLOQUY_CHAT__USAGE_FLUSH_MS", "20"),
        // Titles are calls too; these tests count chat calls only.
        ("COLLOQUY_CHAT__TITLE_MODEL", ""),
    ];
    env.extend_from_slice(extra);
    env
}

/// A stateless send: nothing but usage is stored, so only the budget decides.
fn body() -> Value {
    json!({
        "specialist_id": "general",
        "message": "What does a budget cap protect against?",
        "conversation_history": [],
        "max_tokens": MAX_TOKENS,
    })
}

async fn put_cap(app: &TestApp, user: &str, cap: Value) -> reqwest::Response {
    let admin = app.token("root", Role::Admin);
    app.client
        .put(app.url(&format!("/v1/admin/users/{user}/budget")))
        .bearer_auth(admin)
        .json(&json!({ "monthly_nano_usd": cap }))
        .send()
        .await
        .unwrap()
}

/// The worst case the server reserves for `body()`: read from the refusal of a user whose
/// cap is 0.
async fn reservation(app: &TestApp) -> i64 {
    assert_eq!(put_cap(app, "probe", json!(0)).await.status(), 200);
    let probe = app.token_for("probe", Some("probe@example.com"), Role::User);
    let refused = app
        .post("/v1/chat/send")
        .bearer_auth(&probe)
        .json(&body())
        .send()
        .await
        .unwrap();
    let refused = assert_envelope(refused, 402, "budget_exceeded").await;
    let details = &refused["error"]["details"];
    assert_eq!(details["monthly_cap_nano_usd"], 0);
    assert_eq!(details["remaining_nano_usd"], 0);
    let required = details["required_nano_usd"].as_i64().unwrap();
    // max_tokens of output at $0.60/M, plus the estimated prompt at $0.15/M.
    assert!(
        required > 600_000 && required < 620_000,
        "worst case {required}"
    );
    required
}

/// Sends `n` calls at once, spread over `apps`; returns (admitted, refused bodies).
async fn burst(apps: &[&TestApp], token: &str, n: usize) -> (usize, Vec<Value>) {
    let calls = (0..n).map(|i| {
        let app = apps[i % apps.len()];
        async move {
            app.post("/v1/chat/send")
                .bearer_auth(token)
                .json(&body())
                .send()
                .await
                .unwrap()
        }
    });
    let mut admitted = 0;
    let mut refused = Vec::new();
    for response in join_all(calls).await {
        match response.status().as_u16() {
            200 => admitted += 1,
            402 => refused.push(response.json::<Value>().await.unwrap()),
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    (admitted, refused)
}

fn slow_replies(up: &Upstream, n: usize) {
    for _ in 0..n {
        up.push(Reply::Slow(
            Duration::from_millis(300),
            Box::new(Reply::json(
                200,
                fakes::openai_completion("Overspending.", PROMPT_TOKENS, MAX_TOKENS),
            )),
        ));
    }
}

/// 50 concurrent calls against a cap that fits 10 worst cases and a half: exactly 10 get
/// through (the 11th never fits, even after the others settle at their real cost), the
/// other 40 get 402 with what is left, and the recorded spend stays within the cap.
async fn a_cap_holds_under_concurrency(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = TestApp::spawn_with(backend, &env(&up, &[])).await else {
        return;
    };
    let r = reservation(&app).await;
    let cap = 10 * r + r / 2;
    assert_eq!(put_cap(&app, "alice", json!(cap)).await.status(), 200);
    slow_replies(&up, 50);
    let alice = app.token_for("alice", Some("alice@example.com"), Role::User);
    let (admitted, refused) = burst(&[&app], &alice, 50).await;
    assert_eq!(admitted, 10, "admitted calls");
    assert_eq!(refused.len(), 40);
    for body in &refused {
        let details = &body["error"]["details"];
        assert_eq!(body["error"]["code"], "budget_exceeded");
        assert_eq!(details["monthly_cap_nano_usd"], cap);
        assert_eq!(details["required_nano_usd"], r);
        let remaining = details["remaining_nano_usd"].as_i64().unwrap();
        assert!(remaining < r, "refused though {remaining} ≥ {r} was left");
        assert!(
            details["resets_at"]
                .as_str()
                .unwrap()
                .ends_with("-01T00:00:00Z")
        );
    }
    assert_eq!(up.calls(), 10, "refused calls never reach the provider");
    // The record agrees: ten calls at their real cost, within the cap.
    let spent = settled_spend(&app, 10).await;
    assert_eq!(spent, 10 * CALL_COST);
    assert!(spent <= cap);
    let mine = app.get_json("/v1/me/budget", &alice).await;
    assert_eq!(mine["monthly_cap_nano_usd"], cap);
    assert_eq!(mine["source"], "user");
    assert_eq!(mine["spent_nano_usd"], 10 * CALL_COST);
    assert_eq!(mine["reserved_nano_usd"], 0);
    assert_eq!(mine["remaining_nano_usd"], cap - 10 * CALL_COST);
}

/// The sum of chat calls' costs in usage_logs, once `rows` of them are written.
async fn settled_spend(app: &TestApp, rows: i64) -> i64 {
    crate::helpers::eventually_count(
        &app.db,
        "SELECT count(*) FROM usage_logs WHERE specialist_id IS NOT NULL",
        rows,
    )
    .await;
    count(
        &app.db,
        "SELECT CAST(coalesce(sum(cost_nano_usd), 0) AS BIGINT) FROM usage_logs WHERE specialist_id IS NOT NULL",
    )
    .await
}

/// The same on two instances sharing one Redis ledger (and one database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_holds_across_instances_sharing_redis() {
    let Some(redis) = reachable_redis().await else {
        return;
    };
    let up = Upstream::openai().await;
    let prefix = format!("test:budget-shared:{}:", uuid::Uuid::now_v7().simple());
    let shared = env(
        &up,
        &[
            ("REDIS_URL", redis.as_str()),
            ("COLLOQUY_BUDGETS__BACKEND", "redis"),
            ("COLLOQUY_BUDGETS__REDIS_PREFIX", prefix.as_str()),
        ],
    );
    let Some(first) = TestApp::spawn_with(Backend::Sqlite, &shared).await else {
        return;
    };
    let second = TestApp::spawn_on(first.db.clone(), &shared).await;
    let r = reservation(&first).await;
    let cap = 10 * r + r / 2;
    assert_eq!(put_cap(&first, "alice", json!(cap)).await.status(), 200);
    slow_replies(&up, 50);
    let alice = first.token_for("alice", Some("alice@example.com"), Role::User);
    let (admitted, refused) = burst(&[&first, &second], &alice, 50).await;
    assert_eq!(admitted, 10, "admitted calls across both instances");
    assert_eq!(refused.len(), 40);
    assert_eq!(up.calls(), 10);
    let spent = settled_spend(&first, 10).await;
    assert_eq!(spent, 10 * CALL_COST);
    // Both instances read the one ledger.
    for app in [&first, &second] {
        let mine = app.get_json("/v1/me/budget", &alice).await;
        assert_eq!(mine["spent_nano_usd"], 10 * CALL_COST);
        assert_eq!(mine["reserved_nano_usd"], 0);
    }
}

/// A stream's reservation settles to its real cost from the usage chunk (never zero), and
/// the next stream is refused before any event once the rest does not fit.
async fn streamed_calls_settle_at_their_cost(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = TestApp::spawn_with(backend, &env(&up, &[])).await else {
        return;
    };
    let r = reservation(&app).await;
    // Room for two worst cases; after two real calls, less than one is left.
    assert_eq!(put_cap(&app, "sam", json!(2 * r)).await.status(), 200);
    let sam = app.token_for("sam", Some("sam@example.com"), Role::User);
    for _ in 0..2 {
        up.push(Reply::sse(vec![
            fakes::openai_delta("Every "),
            fakes::openai_delta("token counts."),
            fakes::openai_finish("stop"),
            fakes::openai_usage(PROMPT_TOKENS, MAX_TOKENS, 0),
            "data: [DONE]\n\n".to_owned(),
        ]));
        let response = app
            .post("/v1/chat/stream")
            .bearer_auth(&sam)
            .json(&body())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(text.contains("event: done"), "{text}");
    }
    let mine = app.get_json("/v1/me/budget", &sam).await;
    assert_eq!(mine["spent_nano_usd"], 2 * CALL_COST);
    assert_eq!(mine["reserved_nano_usd"], 0);
    let refused = app
        .post("/v1/chat/stream")
        .bearer_auth(&sam)
        .json(&body())
        .send()
        .await
        .unwrap();
    let refused = assert_envelope(refused, 402, "budget_exceeded").await;
    assert_eq!(
        refused["error"]["details"]["remaining_nano_usd"],
        2 * r - 2 * CALL_COST
    );
    assert_eq!(settled_spend(&app, 2).await, 2 * CALL_COST);
    // One user, one account, whatever the credential: a token without the email (its usage
    // rows are filed under another hash) sees the same spend and is refused alike.
    let sam_without_email = app.token_for("sam", None, Role::User);
    let mine = app.get_json("/v1/me/budget", &sam_without_email).await;
    assert_eq!(mine["spent_nano_usd"], 2 * CALL_COST);
    let refused = app
        .post("/v1/chat/send")
        .bearer_auth(&sam_without_email)
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_envelope(refused, 402, "budget_exceeded").await;
    assert_eq!(up.calls(), 2);
}

/// Spend already in usage_logs this month (an earlier process's calls) counts from the
/// first call; spend of last month does not.
async fn spend_on_record_counts(backend: Backend) {
    let up = Upstream::openai().await;
    let Some(app) = TestApp::spawn_with(backend, &env(&up, &[])).await else {
        return;
    };
    let r = reservation(&app).await;
    let dana = app.token_for("dana", Some("dana@example.com"), Role::User);
    let hash = crate::usage::hash(&app, Some("dana@example.com"), "dana");
    let now = time::OffsetDateTime::now_utc();
    let month_start = now
        .replace_day(1)
        .unwrap()
        .replace_time(time::Time::MIDNIGHT);
    let spent_row = |cost: i64, at: time::OffsetDateTime| UsageRecord {
        id: new_id(),
        request_id: "earlier".into(),
        user_hash: hash.clone(),
        conversation_id: None,
        specialist_id: None,
        provider: "openai".into(),
        model: "openai/gpt-4o-mini".into(),
        input_tokens: 1,
        output_tokens: 1,
        cached_tokens: 0,
        usage_estimated: false,
        cost_nano_usd: cost,
        latency_ms: 1,
        ttft_ms: None,
        streamed: false,
        success: true,
        error_code: None,
        created_at: at,
    };
    app.store
        .insert_usage(&[
            spent_row(1_000_000, month_start),
            // Last month's last microsecond: not this month's spend.
            spent_row(50_000_000, month_start - time::Duration::microseconds(1)),
        ])
        .await
        .unwrap();
    // Room for one worst case beyond what is on record, not two.
    let cap = 1_000_000 + r + r / 2;
    assert_eq!(put_cap(&app, "dana", json!(cap)).await.status(), 200);
    let mine = app.get_json("/v1/me/budget", &dana).await;
    assert_eq!(mine["spent_nano_usd"], 1_000_000);
    assert_eq!(mine["remaining_nano_usd"], r + r / 2);
    up.push(Reply::json(
        200,
        fakes::openai_completion("Overspending.", PROMPT_TOKENS, MAX_TOKENS),
    ));
    let send = || {
        app.post("/v1/chat/send")
            .bearer_auth(&dana)
            .json(&body())
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    let refused = assert_envelope(send().await.unwrap(), 402, "budget_exceeded").await;
    assert_eq!(
        refused["error"]["details"]["spent_nano_usd"],
        1_000_000 + CALL_COST
    );
    assert_eq!(up.calls(), 1);
}

/// The worst case is bounded and priced at the dearest model that may answer: a capped
/// call whose request and specialist name no max_tokens is sent with
/// budgets.default_max_tokens, and a specialist whose fallback is gpt-4o reserves at
/// gpt-4o's price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worst_case_is_bounded_and_priced_at_the_dearest_model() {
    let up = Upstream::openai().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("specialists.toml"),
        r#"
[[specialists]]
id = "open"
name = "Open-ended"
description = "No max_tokens of its own."
system_prompt = "Answer."
model = "openai/gpt-4o-mini"

[[specialists]]
id = "careful"
name = "Careful"
description = "Falls back to a dearer model."
system_prompt = "Answer."
model = "openai/gpt-4o-mini"
max_tokens = 1000
fallback_models = ["openai/gpt-4o"]
"#,
    )
    .unwrap();
    let config_dir = dir.path().to_str().unwrap();
    let Some(app) = TestApp::spawn_with(
        Backend::Sqlite,
        &env(
            &up,
            &[
                ("COLLOQUY_CONFIG_DIR", config_dir),
                ("COLLOQUY_BUDGETS__DEFAULT_MAX_TOKENS", "2000"),
                ("COLLOQUY_BUDGETS__DEFAULT_MONTHLY_NANO_USD", "5000000"),
            ],
        ),
    )
    .await
    else {
        return;
    };
    let lee = app.token_for("lee", Some("lee@example.com"), Role::User);
    let send = |specialist: &str| {
        app.post("/v1/chat/send")
            .bearer_auth(&lee)
            .json(
                &json!({"specialist_id": specialist, "message": "hi", "conversation_history": []}),
            )
            .send()
    };
    up.push(Reply::json(200, fakes::openai_completion("Hello.", 5, 3)));
    assert_eq!(send("open").await.unwrap().status(), 200);
    assert_eq!(up.received()[0].body["max_tokens"], 2000);
    // 1000 output tokens at gpt-4o's $10/M alone are 10,000,000 nano-USD: over the cap,
    // though gpt-4o-mini's worst case (about 600,000) would fit.
    let refused = assert_envelope(send("careful").await.unwrap(), 402, "budget_exceeded").await;
    let required = refused["error"]["details"]["required_nano_usd"]
        .as_i64()
        .unwrap();
    assert!(
        (10_000_000..10_100_000).contains(&required),
        "worst case {required}"
    );
    assert_eq!(up.calls(), 1);
}

/// The admin routes: only admins; a cap must be given, null means none, and DELETE brings
/// the default back. A free model stays usable under a cap of 0.
async fn admins_set_caps(backend: Backend) {
    let Some(app) = TestApp::spawn_with(
        backend,
        &[("COLLOQUY_BUDGETS__DEFAULT_MONTHLY_NANO_USD", "5000")],
    )
    .await
    else {
        return;
    };
    let admin = app.token("root", Role::Admin);
    let user = app.token_for("kim", Some("kim@example.com"), Role::User);
    let path = "/v1/admin/users/kim/budget";
    let default = app.get_json(path, &admin).await;
    assert_eq!(default["monthly_cap_nano_usd"], 5000);
    assert_eq!(default["source"], "default");
    assert_eq!(default["updated_by"], Value::Null);
    let put = |token: &str, body: Value| {
        app.client
            .put(app.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    assert_envelope(
        put(&user, json!({"monthly_nano_usd": 1})).await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    // A user id no token could carry is refused, not sent to the database.
    let nul = app
        .client
        .get(app.url("/v1/admin/users/a%00b/budget"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_envelope(nul, 422, "invalid_field").await;
    for bad in [
        json!({}),
        json!({"monthly_nano_usd": -1}),
        json!({"monthly_nano_usd": "100"}),
        json!({"monthly_nano_usd": 1.5}),
        json!({"monthly_nano_usd": 2_000_000_000_000_000_000_i64}),
        json!({"monthly_nano_usd": 5, "extra": true}),
    ] {
        let response = put(&admin, bad.clone()).await.unwrap();
        let status = response.status().as_u16();
        assert!(
            status == 422 || status == 400,
            "{bad}: {status} {}",
            response.text().await.unwrap()
        );
    }
    let set: Value = put(&admin, json!({"monthly_nano_usd": null}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(set["monthly_cap_nano_usd"], Value::Null);
    assert_eq!(set["source"], "user");
    assert_eq!(set["updated_by"], "root");
    let mine = app.get_json("/v1/me/budget", &user).await;
    assert_eq!(mine["monthly_cap_nano_usd"], Value::Null);
    assert_eq!(mine["remaining_nano_usd"], Value::Null);
    put(&admin, json!({"monthly_nano_usd": 0})).await.unwrap();
    // The mock is free: a cap of 0 still lets it answer.
    let free = app
        .post("/v1/chat/send")
        .bearer_auth(&user)
        .json(&json!({"specialist_id": "general", "message": "hello", "conversation_history": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(free.status(), 200);
    let removed: Value = app
        .client
        .delete(app.url(path))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(removed["source"], "default");
    assert_eq!(removed["monthly_cap_nano_usd"], 5000);
    assert_eq!(
        app.get_json("/v1/me/budget", &user).await["monthly_cap_nano_usd"],
        5000
    );
}

/// Redis away: "closed" refuses capped calls with 503 budget_unavailable, "open" lets them
/// through; users without a cap are not affected either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_follows_the_policy() {
    for (policy, status, code) in [
        ("closed", 503, Some("budget_unavailable")),
        ("open", 200, None),
    ] {
        let Some(app) = TestApp::spawn_with(
            Backend::Sqlite,
            &[
                // Nothing listens on port 1.
                ("REDIS_URL", "redis://127.0.0.1:1"),
                ("COLLOQUY_RATE_LIMIT__BACKEND", "memory"),
                ("COLLOQUY_BUDGETS__BACKEND", "redis"),
                ("COLLOQUY_BUDGETS__REDIS_FAILURE", policy),
                ("COLLOQUY_BUDGETS__DEFAULT_MONTHLY_NANO_USD", "1000"),
            ],
        )
        .await
        else {
            return;
        };
        let capped = app.token_for("cap", Some("cap@example.com"), Role::User);
        let send = |token: String| {
            app.post("/v1/chat/send")
                .bearer_auth(token)
                .json(&json!({"specialist_id": "general", "message": "hello", "conversation_history": []}))
                .send()
        };
        let response = send(capped).await.unwrap();
        match code {
            Some(code) => {
                assert_envelope(response, status, code).await;
            }
            None => assert_eq!(response.status(), status),
        }
        // Without a cap the ledger is never asked.
        assert_eq!(put_cap(&app, "free", Value::Null).await.status(), 200);
        let free = app.token_for("free", Some("free@example.com"), Role::User);
        assert_eq!(send(free).await.unwrap().status(), 200, "{policy}");
        app.shutdown().await;
    }
}
