//! Usage reports on both databases: the sums over a seeded log, computed here by hand, for
//! every grouping; range edges; the caller's rows only; the admin view of one user and of
//! everyone; refusals.

use colloquy::domain::{Role, UsageRecord, new_id};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::macros::datetime;

use crate::helpers::{Backend, TestApp, assert_envelope};
use crate::on_both_backends;

on_both_backends!(reports_equal_the_sums_of_the_log);

/// The usage hash as the server files it (documented: SHA-256 of the pepper and the
/// lowercase email, or of "sub:" and the user id).
pub fn hash(app: &TestApp, email: Option<&str>, sub: &str) -> String {
    let mut h = Sha256::new();
    h.update(app.config.auth.user_hash_pepper.expose().as_bytes());
    match email {
        Some(e) => h.update(e.to_ascii_lowercase().as_bytes()),
        None => {
            h.update(b"sub:");
            h.update(sub.as_bytes());
        }
    }
    hex::encode(h.finalize())
}

fn row(
    user_hash: &str,
    at: time::OffsetDateTime,
    model: &str,
    specialist: Option<&str>,
    tokens: (i64, i64, i64),
    cost: i64,
    success: bool,
) -> UsageRecord {
    UsageRecord {
        id: new_id(),
        request_id: "r".into(),
        user_hash: user_hash.into(),
        conversation_id: None,
        specialist_id: specialist.map(str::to_owned),
        provider: "openai".into(),
        model: model.into(),
        input_tokens: tokens.0,
        output_tokens: tokens.1,
        cached_tokens: tokens.2,
        usage_estimated: false,
        cost_nano_usd: cost,
        latency_ms: 10,
        ttft_ms: None,
        streamed: false,
        success,
        error_code: (!success).then(|| "upstream_error".to_owned()),
        created_at: at,
    }
}

/// The expected lines for `key`: sums over the rows in [from, to), by hand.
fn expected(rows: &[&UsageRecord], key: impl Fn(&UsageRecord) -> Value) -> Value {
    let mut lines: Vec<(String, Value, [i64; 6])> = Vec::new();
    for r in rows {
        let k = key(r);
        let sort = match &k {
            Value::Null => "\u{10ffff}".to_owned(),
            other => other.as_str().unwrap().to_owned(),
        };
        let sums = [
            1,
            i64::from(r.success),
            r.input_tokens,
            r.output_tokens,
            r.cached_tokens,
            r.cost_nano_usd,
        ];
        match lines.iter_mut().find(|(_, lk, _)| *lk == k) {
            Some((_, _, s)) => s.iter_mut().zip(sums).for_each(|(a, b)| *a += b),
            None => lines.push((sort, k, sums)),
        }
    }
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(
        lines
            .into_iter()
            .map(|(_, k, s)| {
                json!({"key": k, "requests": s[0], "succeeded": s[1], "input_tokens": s[2],
                       "output_tokens": s[3], "cached_tokens": s[4], "cost_nano_usd": s[5]})
            })
            .collect(),
    )
}

async fn reports_equal_the_sums_of_the_log(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let alice_email = hash(&app, Some("alice@example.com"), "alice");
    let alice_sub = hash(&app, None, "alice");
    let bob = hash(&app, Some("bob@example.com"), "bob");
    let log = vec![
        row(
            &alice_email,
            datetime!(2025-11-01 00:00:00 UTC),
            "openai/gpt-4o-mini",
            Some("general"),
            (1000, 200, 100),
            270_000,
            true,
        ),
        row(
            &alice_email,
            datetime!(2025-11-01 23:59:59.999999 UTC),
            "openai/gpt-4o",
            Some("analyst"),
            (5000, 700, 0),
            19_500_000,
            true,
        ),
        row(
            &alice_email,
            datetime!(2025-11-02 08:30:00 UTC),
            "openai/gpt-4o-mini",
            None,
            (60, 6, 0),
            12_600,
            true,
        ),
        row(
            &alice_sub,
            datetime!(2025-11-02 12:00:00 UTC),
            "openai/gpt-4o-mini",
            Some("general"),
            (300, 0, 0),
            0,
            false,
        ),
        row(
            &alice_email,
            datetime!(2025-11-02 23:00:00 UTC),
            "openai/gpt-4o",
            Some("general"),
            (7, 11, 3),
            1_234_567,
            true,
        ),
        // Outside [2025-11-01, 2025-11-03): just before, and exactly at the end.
        row(
            &alice_email,
            datetime!(2025-10-31 23:59:59.999999 UTC),
            "openai/gpt-4o",
            Some("general"),
            (1, 1, 0),
            999,
            true,
        ),
        row(
            &alice_email,
            datetime!(2025-11-03 00:00:00 UTC),
            "openai/gpt-4o",
            Some("general"),
            (1, 1, 0),
            999,
            true,
        ),
        // Someone else's.
        row(
            &bob,
            datetime!(2025-11-01 10:00:00 UTC),
            "openai/gpt-4o",
            Some("general"),
            (40, 4, 0),
            4_000,
            true,
        ),
    ];
    app.store.insert_usage(&log).await.unwrap();
    let in_range = |r: &&UsageRecord| {
        r.created_at >= datetime!(2025-11-01 00:00:00 UTC)
            && r.created_at < datetime!(2025-11-03 00:00:00 UTC)
    };
    let alices: Vec<&UsageRecord> = log[..7].iter().filter(in_range).collect();
    let everyone: Vec<&UsageRecord> = log.iter().filter(in_range).collect();
    let day = |r: &UsageRecord| json!(r.created_at.date().to_string());
    let model = |r: &UsageRecord| json!(r.model);
    let specialist = |r: &UsageRecord| json!(r.specialist_id);

    // Alice's token has her email; her user-id row counts too (an API key or an older token).
    let alice = app.token_for("alice", Some("alice@example.com"), Role::User);
    let report = |token: &str, path: String| {
        let app = &app;
        let token = token.to_owned();
        async move { app.get_json(&path, &token).await }
    };
    for (group, key) in [
        ("day", &day as &dyn Fn(&UsageRecord) -> Value),
        ("model", &model),
        ("specialist", &specialist),
    ] {
        let got = report(
            &alice,
            format!("/v1/usage?from=2025-11-01&to=2025-11-03T00:00:00Z&group_by={group}"),
        )
        .await;
        assert_eq!(got["data"], expected(&alices, key), "group_by={group}");
        assert_eq!(got["group_by"], group);
        assert_eq!(got["from"], "2025-11-01T00:00:00Z");
        let total = expected(&alices, |_| Value::Null)[0].clone();
        let mut total = total.as_object().unwrap().clone();
        total.remove("key");
        assert_eq!(got["total"], Value::Object(total), "group_by={group}");
    }

    // Admins: one user (with the email that finds the rest of her rows), and everyone.
    let admin = app.token("root", Role::Admin);
    let one = report(
        &admin,
        "/v1/admin/usage?user_id=alice&email=alice@example.com&from=2025-11-01&to=2025-11-03&group_by=model".into(),
    )
    .await;
    assert_eq!(one["data"], expected(&alices, model));
    let all = report(
        &admin,
        "/v1/admin/usage?from=2025-11-01&to=2025-11-03&group_by=model".into(),
    )
    .await;
    assert_eq!(all["data"], expected(&everyone, model));

    // Refusals.
    let get = |token: &str, path: &str| app.get(path).bearer_auth(token.to_owned()).send();
    assert_envelope(
        get(&alice, "/v1/admin/usage").await.unwrap(),
        403,
        "forbidden",
    )
    .await;
    assert_envelope(
        get(&admin, "/v1/admin/usage?email=alice@example.com")
            .await
            .unwrap(),
        422,
        "invalid_field",
    )
    .await;
    for bad in [
        "/v1/usage?group_by=week",
        "/v1/usage?from=2025-11-03&to=2025-11-01",
        "/v1/usage?from=yesterday",
        "/v1/usage?from=2020-01-01&to=2025-01-01",
        "/v1/usage?user_id=bob",
        "/v1/usage?to=9999-12-31T23:00:00-05:00",
        "/v1/usage?to=0000-01-10",
        "/v1/usage?from=1969-12-31&to=1970-01-02",
    ] {
        assert_envelope(get(&alice, bad).await.unwrap(), 422, "invalid_field").await;
    }
    // With no range, the last 30 days: none of the seeded rows.
    let recent = report(&alice, "/v1/usage".into()).await;
    assert_eq!(recent["data"], json!([]));
    assert_eq!(recent["total"]["requests"], 0);
}
