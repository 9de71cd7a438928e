//! Authentication end to end: a real JWKS served over HTTP (with rotation and outage), the
//! hostile-token table, PEM keys, the domain allow-list, and API keys on both databases.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use colloquy::domain::Role;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_envelope};
use crate::on_both_backends;

const RSA_A: &[u8] = include_bytes!("fixtures/rsa_a.pem");
const RSA_B: &[u8] = include_bytes!("fixtures/rsa_b.pem");
const EC: &[u8] = include_bytes!("fixtures/ec.pem");
const ED: &[u8] = include_bytes!("fixtures/ed.pem");
const RSA_A_PUBLIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/api/fixtures/rsa_a.pub.pem"
);

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "colloquy";

fn encoding_key(alg: Algorithm, pem: &[u8]) -> EncodingKey {
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    }
}

fn jwk(alg: Algorithm, pem: &[u8], kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(alg, pem), alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

/// A fake identity provider: serves a JWKS it can rotate, counts fetches, can go down.
#[derive(Clone)]
struct Idp {
    set: Arc<std::sync::Mutex<JwkSet>>,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    url: String,
}

impl Idp {
    async fn start(keys: Vec<Jwk>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let idp = Self {
            set: Arc::new(std::sync::Mutex::new(JwkSet { keys })),
            fetches: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(false)),
            url,
        };
        let served = idp.clone();
        let app = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let idp = served.clone();
                async move {
                    idp.fetches.fetch_add(1, Ordering::SeqCst);
                    if idp.down.load(Ordering::SeqCst) {
                        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
                    }
                    let set = idp.set.lock().unwrap().clone();
                    axum::Json(set).into_response()
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        idp
    }

    fn rotate(&self, keys: Vec<Jwk>) {
        self.set.lock().unwrap().keys = keys;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(sub: &str, email: &str) -> Value {
    json!({"sub": sub, "email": email, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "roles": ["user"]})
}

fn sign(alg: Algorithm, pem: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding_key(alg, pem)).unwrap()
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Replaces the payload (middle part) of a token.
fn with_payload(token: &str, payload: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap());
    format!("{}.{}.{}", parts[0], body, parts[2])
}

async fn app_with_idp(backend: Backend, idp: &Idp, extra: &[(&str, &str)]) -> Option<TestApp> {
    let mut overrides = vec![
        ("COLLOQUY_AUTH__JWKS_URL", idp.url.as_str()),
        ("COLLOQUY_AUTH__ISSUER", ISSUER),
        ("COLLOQUY_AUTH__AUDIENCE", AUDIENCE),
        ("COLLOQUY_AUTH__ALLOWED_EMAIL_DOMAINS", "[\"example.com\"]"),
        ("COLLOQUY_AUTH__JWKS_MIN_REFETCH_SECS", "3600"),
    ];
    overrides.extend_from_slice(extra);
    TestApp::spawn_with(backend, &overrides).await
}

/// Calls a protected read route with an optional Authorization header.
async fn probe(app: &TestApp, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app.get("/v1/api-keys");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

on_both_backends!(
    jwks_tokens_of_every_family_are_accepted,
    hostile_tokens_are_refused,
    unknown_kid_refetches_once_then_401,
    rotation_and_outage,
    api_keys_lifecycle,
    api_keys_are_owner_scoped,
    revocation_reaches_every_instance_within_the_bound,
);

async fn jwks_tokens_of_every_family_are_accepted(backend: Backend) {
    let idp = Idp::start(vec![
        jwk(Algorithm::RS256, RSA_A, "rsa-a"),
        jwk(Algorithm::ES256, EC, "ec"),
        jwk(Algorithm::EdDSA, ED, "ed"),
    ])
    .await;
    let Some(app) = app_with_idp(backend, &idp, &[]).await else {
        return;
    };
    assert_eq!(idp.fetches(), 1, "fetched once at start-up");
    for (alg, pem, kid) in [
        (Algorithm::RS256, RSA_A, "rsa-a"),
        (Algorithm::ES256, EC, "ec"),
        (Algorithm::EdDSA, ED, "ed"),
    ] {
        let token = sign(alg, pem, Some(kid), &claims("alice", "alice@example.com"));
        let response = probe(&app, Some(&format!("Bearer {token}"))).await;
        assert_eq!(
            response.status(),
            200,
            "{alg:?}: {}",
            response.text().await.unwrap()
        );
    }
    // With an identity provider configured, HS256 is off unless asked for...
    let token = hs256(
        app.config.auth.jwt_secret.expose().as_bytes(),
        &claims("bob", "Bob@Example.COM"),
    );
    assert_eq!(
        probe(&app, Some(&format!("Bearer {token}"))).await.status(),
        401
    );
    // ...and works beside the JWKS when it is, with claims mapped.
    let Some(both) = app_with_idp(backend, &idp, &[("COLLOQUY_AUTH__HS256", "on")]).await else {
        return;
    };
    assert_eq!(
        probe(&both, Some(&format!("Bearer {token}")))
            .await
            .status(),
        200
    );
    assert_eq!(
        idp.fetches(),
        2,
        "one start-up fetch per instance; warm keys need none"
    );
}

async fn hostile_tokens_are_refused(backend: Backend) {
    let idp = Idp::start(vec![jwk(Algorithm::RS256, RSA_A, "rsa-a")]).await;
    let Some(app) = app_with_idp(backend, &idp, &[]).await else {
        return;
    };
    let good = claims("alice", "alice@example.com");
    let valid = sign(Algorithm::RS256, RSA_A, Some("rsa-a"), &good);
    assert_eq!(
        probe(&app, Some(&format!("Bearer {valid}"))).await.status(),
        200,
        "baseline"
    );

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let none_token = format!(
        "{none_header}.{}.",
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let rsa_public = std::fs::read(RSA_A_PUBLIC).unwrap();
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    let mut early = good.clone();
    early["nbf"] = json!(now() + 3600);
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.test");
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut admin = good.clone();
    admin["roles"] = json!(["admin"]);
    let mut outsider = good.clone();
    outsider["email"] = json!("mallory@evil.example");
    let mut no_email = good.clone();
    no_email.as_object_mut().unwrap().remove("email");
    let mut unverified = good.clone();
    unverified["email_verified"] = json!(false);
    let mut tampered_sig = valid.clone();
    let last = tampered_sig.pop().unwrap();
    tampered_sig.push(if last == 'A' { 'B' } else { 'A' });

    // (Authorization header, status, code, why)
    let cases: Vec<(Option<String>, u16, &str, &str)> = vec![
        (None, 401, "unauthorized", "no header"),
        (
            Some("Basic YWxpY2U6c2VjcmV0".into()),
            401,
            "unauthorized",
            "Basic scheme",
        ),
        (
            Some("Bearer".into()),
            401,
            "unauthorized",
            "scheme without token",
        ),
        (
            Some("Bearer not.a.jwt".into()),
            401,
            "unauthorized",
            "garbage token",
        ),
        (
            Some(format!("Bearer {none_token}")),
            401,
            "unauthorized",
            "alg none",
        ),
        (
            Some(format!("Bearer {}", hs256(&rsa_public, &good))),
            401,
            "unauthorized",
            "HS256 signed with the RSA public key",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, RSA_A, Some("rsa-a"), &expired)
            )),
            401,
            "unauthorized",
            "expired",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, RSA_A, Some("rsa-a"), &early)
            )),
            401,
            "unauthorized",
            "nbf in the future",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, RSA_A, Some("rsa-a"), &wrong_iss)
            )),
            401,
            "unauthorized",
            "wrong iss",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, RSA_A, Some("rsa-a"), &wrong_aud)
            )),
            401,
            "unauthorized",
            "wrong aud",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, RSA_A, Some("rsa-a"), &no_exp)
            )),
            401,
            "unauthorized",
            "no exp",
        ),
        (
            Some(format!("Bearer {}", with_payload(&valid, &admin))),
            401,
            "unauthorized",
            "tampered payload",
        ),
        (
            Some(format!("Bearer {tampered_sig}")),
            401,
            "unauthorized",
            "tampered signature",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, RSA_B, Some("rsa-a"), &good)
            )),
            401,
            "unauthorized",
            "right kid, wrong key",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS384, RSA_A, Some("rsa-a"), &good)
            )),
            401,
            "unauthorized",
            "algorithm not pinned for the JWKS",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, RSA_A, Some("rsa-a"), &outsider)
            )),
            403,
            "forbidden",
            "email outside the allowed domains",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, RSA_A, Some("rsa-a"), &no_email)
            )),
            403,
            "forbidden",
            "no email while domains are restricted",
        ),
        (
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, RSA_A, Some("rsa-a"), &unverified)
            )),
            403,
            "forbidden",
            "unverified email",
        ),
        (
            Some("Bearer ck_tooshort".into()),
            401,
            "unauthorized",
            "malformed API key",
        ),
    ];
    for (header, status, code, why) in cases {
        let response = probe(&app, header.as_deref()).await;
        assert_eq!(response.status().as_u16(), status, "{why}");
        assert_envelope(response, status, code).await;
    }
    // A viewer is authenticated but may not create.
    let mut viewer = good.clone();
    viewer["roles"] = json!("viewer");
    let token = sign(Algorithm::RS256, RSA_A, Some("rsa-a"), &viewer);
    let response = app
        .post("/v1/conversations")
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_envelope(response, 403, "forbidden").await;
}

async fn unknown_kid_refetches_once_then_401(backend: Backend) {
    let idp = Idp::start(vec![jwk(Algorithm::RS256, RSA_A, "rsa-a")]).await;
    let Some(app) = app_with_idp(backend, &idp, &[]).await else {
        return;
    };
    assert_eq!(idp.fetches(), 1);
    let stranger = sign(
        Algorithm::RS256,
        RSA_B,
        Some("who-knows"),
        &claims("alice", "alice@example.com"),
    );
    let response = probe(&app, Some(&format!("Bearer {stranger}"))).await;
    assert_envelope(response, 401, "unauthorized").await;
    assert_eq!(idp.fetches(), 2, "one refetch for the unknown kid");
    // Within the refetch floor, more unknown kids cause no more fetches.
    for kid in ["k1", "k2", "k3"] {
        let token = sign(
            Algorithm::RS256,
            RSA_B,
            Some(kid),
            &claims("alice", "alice@example.com"),
        );
        assert_eq!(
            probe(&app, Some(&format!("Bearer {token}"))).await.status(),
            401
        );
    }
    assert_eq!(idp.fetches(), 2, "the floor holds");
}

async fn rotation_and_outage(backend: Backend) {
    let idp = Idp::start(vec![jwk(Algorithm::RS256, RSA_A, "rsa-a")]).await;
    // A zero floor lets the rotation be picked up by the first token with the new kid.
    let Some(app) = app_with_idp(
        backend,
        &idp,
        &[("COLLOQUY_AUTH__JWKS_MIN_REFETCH_SECS", "0")],
    )
    .await
    else {
        return;
    };
    let old = sign(
        Algorithm::RS256,
        RSA_A,
        Some("rsa-a"),
        &claims("alice", "alice@example.com"),
    );
    assert_eq!(
        probe(&app, Some(&format!("Bearer {old}"))).await.status(),
        200
    );

    // The provider rotates to a new key: a token naming it triggers a refetch and passes.
    idp.rotate(vec![jwk(Algorithm::RS256, RSA_B, "rsa-b")]);
    let new = sign(
        Algorithm::RS256,
        RSA_B,
        Some("rsa-b"),
        &claims("alice", "alice@example.com"),
    );
    assert_eq!(
        probe(&app, Some(&format!("Bearer {new}"))).await.status(),
        200
    );
    // The retired key is gone from the cache with the refetch.
    assert_eq!(
        probe(&app, Some(&format!("Bearer {old}"))).await.status(),
        401
    );

    // The provider goes down: cached keys keep working.
    idp.down.store(true, Ordering::SeqCst);
    let before = idp.fetches();
    let unknown = sign(
        Algorithm::RS256,
        RSA_A,
        Some("unknown"),
        &claims("alice", "alice@example.com"),
    );
    assert_eq!(
        probe(&app, Some(&format!("Bearer {unknown}")))
            .await
            .status(),
        401
    );
    assert!(idp.fetches() > before, "it tried to refetch");
    assert_eq!(
        probe(&app, Some(&format!("Bearer {new}"))).await.status(),
        200,
        "cached key survives the outage"
    );
}

#[tokio::test]
async fn pem_public_key_is_pinned_to_its_algorithm() {
    let Some(app) = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("COLLOQUY_AUTH__PUBLIC_KEY_PEM_FILE", RSA_A_PUBLIC),
            ("COLLOQUY_AUTH__PUBLIC_KEY_ALGORITHM", "RS256"),
        ],
    )
    .await
    else {
        return;
    };
    let mut c = claims("alice", "alice@example.com");
    c.as_object_mut().unwrap().remove("iss");
    c.as_object_mut().unwrap().remove("aud");
    let ok = sign(Algorithm::RS256, RSA_A, None, &c);
    assert_eq!(
        probe(&app, Some(&format!("Bearer {ok}"))).await.status(),
        200
    );
    let other_alg = sign(Algorithm::RS512, RSA_A, None, &c);
    assert_eq!(
        probe(&app, Some(&format!("Bearer {other_alg}")))
            .await
            .status(),
        401
    );
    let other_key = sign(Algorithm::RS256, RSA_B, None, &c);
    assert_eq!(
        probe(&app, Some(&format!("Bearer {other_key}")))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn role_claims_follow_configured_paths() {
    let Some(app) = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("COLLOQUY_AUTH__SUBJECT_CLAIM", "oid"),
            ("COLLOQUY_AUTH__ROLE_CLAIMS", "[\"realm_access.roles\"]"),
            ("COLLOQUY_AUTH__DEFAULT_ROLE", "viewer"),
        ],
    )
    .await
    else {
        return;
    };
    let secret = app.config.auth.jwt_secret.expose().as_bytes().to_vec();
    let exp = now() + 600;
    // An admin by the nested claim may create an admin key.
    let admin = hs256(
        &secret,
        &json!({"oid": "u-1", "exp": exp, "realm_access": {"roles": ["offline_access", "admin"]}}),
    );
    let response = app
        .post("/v1/api-keys")
        .bearer_auth(&admin)
        .json(&json!({"name": "ops", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // No known role: the default (viewer), which may not create a user key.
    let plain = hs256(
        &secret,
        &json!({"oid": "u-2", "exp": exp, "realm_access": {"roles": ["offline_access"]}}),
    );
    let response = app
        .post("/v1/api-keys")
        .bearer_auth(&plain)
        .json(&json!({"name": "x", "role": "user"}))
        .send()
        .await
        .unwrap();
    assert_envelope(response, 403, "forbidden").await;
    // Without the configured subject claim the token is refused.
    let no_subject = hs256(&secret, &json!({"sub": "u-3", "exp": exp}));
    assert_eq!(
        probe(&app, Some(&format!("Bearer {no_subject}")))
            .await
            .status(),
        401
    );
}

async fn api_keys_lifecycle(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let response = app
        .post("/v1/api-keys")
        .bearer_auth(&alice)
        .json(&json!({"name": "  nightly job  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("ck_") && secret.len() >= 46, "{secret}");
    assert_eq!(created["name"], "nightly job");
    assert_eq!(created["role"], "user", "defaults to the creator's role");
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert!(created["last_used_at"].is_null());

    // The key works as a bearer token and as X-Api-Key, acting as alice.
    let listed: Value = app
        .get("/v1/api-keys")
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(
        listed["data"][0].get("secret").is_none(),
        "the secret is shown only once"
    );
    assert_eq!(
        app.get("/v1/api-keys")
            .header("x-api-key", &secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A key cannot mint a sibling that would outlive its revocation.
    let response = app
        .post("/v1/api-keys")
        .bearer_auth(&secret)
        .json(&json!({"name": "child", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_envelope(response, 403, "forbidden").await;
    // Only a hash is stored.
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let stored = app.store.get_api_key(id).await.unwrap().unwrap();
    assert_ne!(stored.hash, secret);
    assert!(!stored.hash.contains(&secret[3..]));
    // Use is recorded off the request path.
    let mut seen = false;
    for _ in 0..50 {
        if app
            .store
            .get_api_key(id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some()
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "last_used_at recorded");

    // Role ceilings and validation.
    let response = app
        .post("/v1/api-keys")
        .bearer_auth(&alice)
        .json(&json!({"name": "x", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_envelope(response, 403, "forbidden").await;
    let response = app
        .post("/v1/api-keys")
        .bearer_auth(&alice)
        .json(&json!({"name": ""}))
        .send()
        .await
        .unwrap();
    let body = assert_envelope(response, 422, "invalid_field").await;
    assert_eq!(body["error"]["details"]["field"], "name");
    let response = app
        .post("/v1/api-keys")
        .bearer_auth(&alice)
        .json(&json!({"name": "x", "role": "root"}))
        .send()
        .await
        .unwrap();
    let body = assert_envelope(response, 422, "invalid_field").await;
    assert_eq!(body["error"]["details"]["field"], "role");

    // Paging: newest first, with a cursor.
    for n in 0..3 {
        let r = app
            .post("/v1/api-keys")
            .bearer_auth(&alice)
            .json(&json!({"name": format!("k{n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let page: Value = app
        .get("/v1/api-keys?limit=3")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["has_more"], true);
    let names: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["k2", "k1", "k0"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get(&format!("/v1/api-keys?limit=3&cursor={cursor}"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["has_more"], false);
    assert_eq!(rest["data"][0]["name"], "nightly job");
    assert!(rest["next_cursor"].is_null());
    for bad in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "cursor=nope",
        "colour=red",
    ] {
        let response = app
            .get(&format!("/v1/api-keys?{bad}"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_envelope(response, 422, "invalid_field").await;
    }

    // Revocation: immediate on this instance.
    let response = app
        .client
        .delete(app.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = app
        .get("/v1/api-keys")
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 401, "unauthorized").await;
    // Revoking again is fine; the listing shows when.
    let again = app
        .client
        .delete(app.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204);
    assert!(
        app.store
            .get_api_key(id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
}

async fn api_keys_are_owner_scoped(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let alice = app.token("alice", Role::User);
    let bob = app.token("bob", Role::User);
    let root = app.token("root", Role::Admin);
    let created: Value = app
        .post("/v1/api-keys")
        .bearer_auth(&alice)
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();

    // Bob sees none of alice's keys and cannot revoke them.
    let own: Value = app
        .get("/v1/api-keys")
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own["data"].as_array().unwrap().len(), 0);
    let response = app
        .get("/v1/api-keys?owner=alice")
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 404, "not_found").await;
    let response = app
        .client
        .delete(app.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_envelope(response, 404, "not_found").await;
    for bad in ["not-a-uuid", &uuid::Uuid::now_v7().to_string()] {
        let response = app
            .client
            .delete(app.url(&format!("/v1/api-keys/{bad}")))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_envelope(response, 404, "not_found").await;
    }
    // The key still works after bob's attempt.
    let secret = created["secret"].as_str().unwrap();
    assert_eq!(
        app.get("/v1/api-keys")
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // An admin lists and revokes other users' keys.
    let theirs: Value = app
        .get("/v1/api-keys?owner=alice")
        .bearer_auth(&root)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["data"][0]["id"], id);
    assert_eq!(theirs["data"][0]["owner"], "alice");
    let response = app
        .client
        .delete(app.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&root)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        app.get("/v1/api-keys")
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

async fn revocation_reaches_every_instance_within_the_bound(backend: Backend) {
    let ttl = [("COLLOQUY_AUTH__API_KEY_CACHE_SECS", "1")];
    let Some(first) = TestApp::spawn_with(backend, &ttl).await else {
        return;
    };
    let second = TestApp::spawn_on(first.db.clone(), &ttl).await;
    let alice = first.token("alice", Role::User);
    let created: Value = first
        .post("/v1/api-keys")
        .bearer_auth(&alice)
        .json(&json!({"name": "shared"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap();
    // Warm the second instance's cache.
    assert_eq!(
        second
            .get("/v1/api-keys")
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let response = first
        .client
        .delete(first.url(&format!("/v1/api-keys/{}", created["id"].as_str().unwrap())))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let revoked_at = std::time::Instant::now();
    let mut refused_after = None;
    while revoked_at.elapsed() < Duration::from_secs(5) {
        if second
            .get("/v1/api-keys")
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .status()
            == 401
        {
            refused_after = Some(revoked_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused_after = refused_after.expect("the other instance refuses the revoked key");
    assert!(
        refused_after <= Duration::from_millis(2500),
        "within the 1 s cache bound (plus slack): {refused_after:?}"
    );
}
