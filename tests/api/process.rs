//! The binary as operators run it: graceful shutdown on SIGTERM with a request in flight,
//! no credentials in logs even at trace level, `check-config`, `healthcheck`, `migrate`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_colloquy");

struct Server {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    /// A test that fails half-way must not leave its server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `colloquy serve` on a free port with a fresh SQLite file, JSON logs at trace level.
fn start(extra_env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/c.db", dir.path().display());
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("COLLOQUY_CONFIG_DIR", "/nonexistent")
        .env("COLLOQUY_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", &db)
        .env("RUST_LOG", "trace")
        .env("COLLOQUY_TELEMETRY__FORMAT", "json")
        .env("COLLOQUY_SERVER__SHUTDOWN_GRACE_SECS", "10")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("\"listening\"") {
                let _ = tx.send(line.clone());
            }
            sink.lock().unwrap().push(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server reports its address");
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    let address = json["fields"]["address"].as_str().unwrap().to_owned();
    Server {
        child,
        logs,
        address,
        _dir: dir,
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the server to exit (after a signal); its exit status and every log line.
async fn exit(server: Server) -> (std::process::ExitStatus, Vec<String>) {
    let logs = server.logs.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.child.wait()
    })
    .await
    .unwrap()
    .unwrap();
    let lines = logs.lock().unwrap().clone();
    (status, lines)
}

fn token() -> String {
    let out = Command::new(BIN)
        .args(["token", "--sub", "alice", "--role", "user"])
        .env_clear()
        .env("COLLOQUY_CONFIG_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_logs_hold_no_credentials() {
    let server = start(&[]);
    let token = token();
    colloquy::tls::ensure_crypto_provider();
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.address);

    // A request whose body is still arriving when SIGTERM lands.
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let body =
        futures_util::stream::once(async { Ok::<_, std::io::Error>(b"{\"title\": ".to_vec()) })
            .chain(futures_util::stream::once(async move {
                let _ = wait.await;
                Ok(b"\"in flight\"}".to_vec())
            }));
    use futures_util::StreamExt;
    let in_flight = tokio::spawn(
        client
            .post(format!("{base}/v1/conversations"))
            .bearer_auth(&token)
            .header("cookie", "session=cookie-secret-value")
            .header("x-api-key", "ck_apikeysecretvalue")
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    // Wait until the server has the request (its span is logged), then signal.
    for _ in 0..100 {
        if server
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("/v1/conversations"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&server.child);
    for _ in 0..100 {
        if server
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("shutting down"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = release.send(());
    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(
        response.status(),
        201,
        "the in-flight request finished after SIGTERM"
    );

    let (status, lines) = exit(server).await;
    assert!(status.success(), "clean exit after draining: {status:?}");
    let logs = lines.join("\n");
    assert!(logs.contains("stopped"), "shutdown completed");
    for secret in [
        token.as_str(),
        "cookie-secret-value",
        "ck_apikeysecretvalue",
        "Bearer",
    ] {
        assert!(!logs.contains(secret), "`{secret}` leaked into logs");
    }
    // Production logs are JSON lines.
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every log line is JSON"
    );
}

#[test]
fn check_config_redacts_and_names_bad_settings() {
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("check-config")
            .env_clear()
            .env("COLLOQUY_CONFIG_DIR", "/nonexistent");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let ok = run(&[
        ("DATABASE_URL", "postgres://u:hunter2@db/x"),
        ("OPENAI_API_KEY", "sk-live-secret"),
    ]);
    assert!(ok.status.success());
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(stdout.contains("postgres://u:[redacted]@db/x"), "{stdout}");
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("sk-live-secret"),
        "{stdout}"
    );

    let bad = run(&[
        ("COLLOQUY_ENV", "production"),
        ("COLLOQUY_JWT_SECRET", "short"),
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert!(stderr.contains("COLLOQUY_JWT_SECRET"), "{stderr}");
    assert!(
        !stderr.contains("short\""),
        "the secret itself is not echoed: {stderr}"
    );
}

#[test]
fn serve_refuses_to_start_with_an_unsafe_production_config() {
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("COLLOQUY_CONFIG_DIR", "/nonexistent")
        .env("COLLOQUY_ENV", "production")
        .env(
            "COLLOQUY_JWT_SECRET",
            "a-production-secret-of-at-least-32-bytes!",
        )
        .env("COLLOQUY_AUTH__USER_HASH_PEPPER", "a-production-pepper")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("database.url") && stderr.contains("SQLite"),
        "{stderr}"
    );
}

#[tokio::test]
async fn healthcheck_and_migrate_commands() {
    let server = start(&[]);
    let check = |listen: &str| {
        Command::new(BIN)
            .arg("healthcheck")
            .env_clear()
            .env("COLLOQUY_CONFIG_DIR", "/nonexistent")
            .env("COLLOQUY_LISTEN", listen)
            .status()
            .unwrap()
    };
    assert!(check(&server.address).success(), "healthy server → exit 0");
    let port = server.address.rsplit(':').next().unwrap().to_owned();
    assert!(
        check(&format!("0.0.0.0:{port}")).success(),
        "0.0.0.0 is checked on loopback"
    );
    sigterm(&server.child);
    let _ = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.child.wait()
    })
    .await
    .unwrap();
    assert!(
        !check(&format!("127.0.0.1:{port}")).success(),
        "stopped server → non-zero"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/m/c.db", dir.path().display());
    let status = Command::new(BIN)
        .arg("migrate")
        .env_clear()
        .env("COLLOQUY_CONFIG_DIR", "/nonexistent")
        .env("DATABASE_URL", &db)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        dir.path().join("m/c.db").exists(),
        "migrate creates the database and its folder"
    );
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_50_mb_upload_and_download_do_not_grow_the_server_by_the_file_size() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().display().to_string();
    let server = start(&[
        // Quiet, but the start-up lines (with the address) still come.
        ("RUST_LOG", "warn,colloquy::server=info"),
        ("COLLOQUY_FILES__LOCAL_DIR", &dir),
        ("COLLOQUY_FILES__MAX_UPLOAD_BYTES", "67108864"),
        ("COLLOQUY_TELEMETRY__FORMAT", "json"),
    ]);
    let base = format!("http://{}", server.address);
    colloquy::tls::ensure_crypto_provider();
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let before = peak_rss_kib(server.child.id());

    // 50 MiB of text, generated as it is sent: the client does not hold it either.
    const SIZE: usize = 50 << 20;
    const CHUNK: usize = 64 << 10;
    let boundary = "memory-test-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"big.txt\"\r\nContent-Type: text/plain\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let line = b"0123456789abcdef".repeat(CHUNK / 16);
    let mut expected = Sha256::new();
    for _ in 0..SIZE / CHUNK {
        expected.update(&line);
    }
    let expected = hex::encode(expected.finalize());
    let body = futures_util::stream::iter(
        std::iter::once(head.into_bytes())
            .chain((0..SIZE / CHUNK).map(move |_| line.clone()))
            .chain(std::iter::once(tail.into_bytes()))
            .map(Ok::<_, std::io::Error>),
    );
    let response = client
        .post(format!("{base}/v1/files"))
        .bearer_auth(token())
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let uploaded: serde_json::Value = response.json().await.unwrap();
    assert_eq!(uploaded["data"][0]["size"], SIZE);
    assert_eq!(uploaded["data"][0]["sha256"], expected.as_str());
    let id = uploaded["data"][0]["id"].as_str().unwrap();

    // Download it, hashing as it streams.
    let mut download = client
        .get(format!("{base}/v1/files/{id}/content"))
        .bearer_auth(token())
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut got = Sha256::new();
    let mut size = 0;
    while let Some(chunk) = download.next().await {
        let chunk = chunk.unwrap();
        size += chunk.len();
        got.update(&chunk);
    }
    assert_eq!(size, SIZE);
    assert_eq!(hex::encode(got.finalize()), expected, "byte-identical");

    let grown_mib = peak_rss_kib(server.child.id()).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 25,
        "the server's peak memory grew by {grown_mib} MiB for a 50 MiB file"
    );
    sigterm(&server.child);
    let _ = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.child.wait()
    })
    .await;
}

#[tokio::test]
async fn metrics_on_an_address_of_their_own() {
    let server = start(&[("COLLOQUY_METRICS__LISTEN", "127.0.0.1:0")]);
    let mut metrics_address = None;
    for _ in 0..100 {
        let found = server.logs.lock().unwrap().iter().find_map(|line| {
            let json: serde_json::Value = serde_json::from_str(line).ok()?;
            (json["fields"]["message"] == "metrics listening")
                .then(|| json["fields"]["address"].as_str().map(str::to_owned))
                .flatten()
        });
        if found.is_some() {
            metrics_address = found;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics_address = metrics_address.expect("the metrics address is logged");
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{}/health", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // There: no token needed. On the main address: not served at all.
    let text = client
        .get(format!("http://{metrics_address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "colloquy_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 1"
        ),
        "{text}"
    );
    let main = client
        .get(format!("http://{}/metrics", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
}

/// A fake OTLP/HTTP collector: keeps every JSON body posted to /v1/traces.
async fn collector() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    use axum::routing::post;
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                sink.lock().unwrap().push(json);
                // OTLP/HTTP's success: an empty ExportTraceServiceResponse.
                axum::Json(serde_json::json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Spans of every export, flattened.
fn exported_spans(exports: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut spans = Vec::new();
    for export in exports {
        for rs in export["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone());
            assert_eq!(service, Some("colloquy-test".into()), "{rs}");
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                spans.extend(ss["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    spans
}

/// With an OTLP endpoint set, request spans reach the collector: one continues the
/// caller's `traceparent`, one starts a trace of its own. Every log line of either request,
/// the detached generation's included, carries its request id and the trace id exported.
#[tokio::test]
async fn traces_reach_the_collector_and_every_request_line_carries_its_ids() {
    let (endpoint, exports) = collector().await;
    let server = start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "colloquy-test"),
        ("COLLOQUY_TELEMETRY__OTLP_PROTOCOL", "http/json"),
    ]);
    let token = token();
    colloquy::tls::ensure_crypto_provider();
    let client = reqwest::Client::new();
    let send = |request_id: &'static str, traceparent: Option<&'static str>| {
        let mut request = client
            .post(format!("http://{}/v1/chat/send", server.address))
            .bearer_auth(&token)
            .header("x-request-id", request_id)
            .json(&serde_json::json!({"specialist_id": "general", "message": "trace me"}));
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        request.send()
    };
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let continued = send(
        "traced-1",
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    )
    .await
    .unwrap();
    assert_eq!(continued.status(), 200);
    let fresh = send("traced-2", None).await.unwrap();
    assert_eq!(fresh.status(), 200);

    // Stop the server: the last spans are exported on the way out.
    sigterm(&server.child);
    let (status, lines) = exit(server).await;
    assert!(status.success());
    let logs: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let spans = exported_spans(&exports.lock().unwrap());
    let server_span = |trace: &str| {
        spans
            .iter()
            .find(|s| s["traceId"] == trace && s["name"] == "POST /v1/chat/send")
            .cloned()
    };
    let first = server_span(caller_trace).expect("the continued trace is exported");
    assert_eq!(first["parentSpanId"], "00f067aa0ba902b7");

    for (request_id, trace) in [("traced-1", Some(caller_trace)), ("traced-2", None)] {
        let lines: Vec<&serde_json::Value> = logs
            .iter()
            .filter(|l| l["span"]["request_id"] == request_id)
            .collect();
        let messages: Vec<&str> = lines
            .iter()
            .filter_map(|l| l["fields"]["message"].as_str())
            .collect();
        // The access line, and the provider attempt logged by the detached generation.
        assert!(messages.contains(&"response"), "{messages:?}");
        assert!(messages.contains(&"provider attempt"), "{messages:?}");
        let trace_ids: std::collections::HashSet<&str> = lines
            .iter()
            .map(|l| l["span"]["trace_id"].as_str().unwrap_or("missing"))
            .collect();
        assert_eq!(
            trace_ids.len(),
            1,
            "one trace id per request: {trace_ids:?}"
        );
        let logged = *trace_ids.iter().next().unwrap();
        assert_eq!(logged.len(), 32);
        if let Some(trace) = trace {
            assert_eq!(logged, trace);
        }
        assert!(
            server_span(logged).is_some(),
            "the logged trace id {logged} is the exported one"
        );
    }
}
