//! The load generator for what an off-the-shelf tool cannot measure: time to first token of
//! SSE streams, requests whose bodies differ per worker (one conversation each), and
//! thousands of slow streams held open at once while the servers' RSS is sampled.
//!
//! Every mode prints one JSON object on stdout, for bench/run.sh to collect.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
#[command(about = "Load generator for Colloquy's benchmarks")]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Args, Debug, Clone)]
struct Target {
    /// The URL to POST to.
    #[arg(long)]
    url: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The request body (JSON).
    #[arg(long, conflicts_with = "bodies")]
    body: Option<String>,
    /// A file of JSON bodies, one per line: worker i sends line i (mod the count), so each
    /// worker can have a conversation of its own.
    #[arg(long)]
    bodies: Option<PathBuf>,
    /// For streams: the text whose arrival is the first token (e.g. `event: delta`).
    #[arg(long)]
    first_marker: Option<String>,
    /// For streams: the text that marks a complete answer (e.g. `event: done`); a stream
    /// that ends without it counts as failed.
    #[arg(long)]
    end_marker: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Requests for a while: closed loop (`--concurrency`) or open loop (`--rate`).
    Run {
        #[command(flatten)]
        target: Target,
        /// Workers, each sending its next request when the last one ended.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Requests per second, started on schedule whatever the answers do (open loop).
        #[arg(long)]
        rate: Option<u64>,
        /// Seconds of measuring.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Seconds of load before measuring starts.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
    },
    /// Open `--count` streams, `--ramp` a second, hold them until each ends, and sample the
    /// RSS of the given processes.
    Hold {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 1_000)]
        ramp: u64,
        /// A process to sample, `name=pid` (repeatable).
        #[arg(long = "rss")]
        rss: Vec<String>,
    },
}

/// One finished request: when it started, its time to first token and its total time.
struct Sample {
    started: Instant,
    ttft: Duration,
    total: Duration,
}

struct Client {
    http: reqwest::Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    bodies: Vec<Bytes>,
    first_marker: Option<Vec<u8>>,
    end_marker: Option<Vec<u8>>,
}

impl Client {
    fn new(target: &Target, max_idle: usize) -> Result<Self, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        for h in &target.headers {
            let (name, value) = h.split_once(':').ok_or_else(|| format!("bad header {h}"))?;
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|e| e.to_string())?,
                reqwest::header::HeaderValue::from_str(value.trim()).map_err(|e| e.to_string())?,
            );
        }
        let bodies = match (&target.body, &target.bodies) {
            (Some(b), _) => vec![Bytes::from(b.clone())],
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| Bytes::from(l.to_owned()))
                .collect(),
            (None, None) => return Err("give --body or --bodies".into()),
        };
        if bodies.is_empty() {
            return Err("no bodies".into());
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(max_idle)
            .tcp_nodelay(true)
            .http1_only()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            url: target.url.clone(),
            headers,
            bodies,
            first_marker: target.first_marker.as_ref().map(|m| m.as_bytes().to_vec()),
            end_marker: target.end_marker.as_ref().map(|m| m.as_bytes().to_vec()),
        })
    }

    /// One request, read to its end. Errors are short descriptions, counted by kind.
    async fn request(
        &self,
        worker: usize,
        on_open: Option<&AtomicUsize>,
    ) -> Result<Sample, String> {
        let started = Instant::now();
        let body = self.bodies[worker % self.bodies.len()].clone();
        let response = self
            .http
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("status {}", status.as_u16()));
        }
        if let Some(open) = on_open {
            open.fetch_add(1, Ordering::Relaxed);
        }
        let mut ttft = None;
        let mut ended = self.end_marker.is_none();
        // The tail of the previous chunk, so a marker split across two chunks is found.
        let mut tail: Vec<u8> = Vec::new();
        let mut stream = response.bytes_stream();
        let result = loop {
            match stream.next().await {
                None => break Ok(()),
                Some(Err(e)) => break Err(format!("read: {e}")),
                Some(Ok(chunk)) => {
                    tail.extend_from_slice(&chunk);
                    if ttft.is_none()
                        && self
                            .first_marker
                            .as_ref()
                            .is_none_or(|m| contains(&tail, m))
                    {
                        ttft = Some(started.elapsed());
                    }
                    if !ended && self.end_marker.as_ref().is_some_and(|m| contains(&tail, m)) {
                        ended = true;
                    }
                    let keep = 64.min(tail.len());
                    tail.drain(..tail.len() - keep);
                }
            }
        };
        if let Some(open) = on_open {
            open.fetch_sub(1, Ordering::Relaxed);
        }
        result?;
        if !ended {
            return Err("stream ended without its end marker".into());
        }
        let total = started.elapsed();
        Ok(Sample {
            started,
            ttft: ttft.unwrap_or(total),
            total,
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

#[derive(Default)]
struct Errors {
    count: AtomicU64,
    kinds: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Errors {
    async fn add(&self, error: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        *self.kinds.lock().await.entry(error).or_default() += 1;
    }

    async fn json(&self) -> serde_json::Value {
        json!(*self.kinds.lock().await)
    }
}

async fn run(
    target: Target,
    concurrency: usize,
    rate: Option<u64>,
    duration: u64,
    warmup: u64,
) -> Result<serde_json::Value, String> {
    let client = Arc::new(Client::new(&target, concurrency.max(64))?);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(warmup);
    let stop = measure_from + Duration::from_secs(duration);
    let samples = Arc::new(Mutex::new(Vec::<Sample>::with_capacity(1 << 16)));
    let errors = Arc::new(Errors::default());
    let mut tasks = tokio::task::JoinSet::new();
    match rate {
        None => {
            for worker in 0..concurrency {
                let (client, samples, errors) = (client.clone(), samples.clone(), errors.clone());
                tasks.spawn(async move {
                    let mut mine = Vec::new();
                    while Instant::now() < stop {
                        match client.request(worker, None).await {
                            Ok(s) => mine.push(s),
                            Err(e) => errors.add(e).await,
                        }
                    }
                    samples.lock().await.extend(mine);
                });
            }
        }
        Some(rate) => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0usize;
            while Instant::now() < stop {
                tick.tick().await;
                let (client, samples, errors) = (client.clone(), samples.clone(), errors.clone());
                let worker = n;
                n += 1;
                tasks.spawn(async move {
                    match client.request(worker, None).await {
                        Ok(s) => samples.lock().await.push(s),
                        Err(e) => errors.add(e).await,
                    }
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let samples = samples.lock().await;
    let measured: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.started >= measure_from && s.started < stop)
        .collect();
    let mut ttft: Vec<Duration> = measured.iter().map(|s| s.ttft).collect();
    let mut total: Vec<Duration> = measured.iter().map(|s| s.total).collect();
    ttft.sort_unstable();
    total.sort_unstable();
    Ok(json!({
        "completed": measured.len(),
        "errors": errors.count.load(Ordering::Relaxed),
        "error_kinds": errors.json().await,
        "per_sec": measured.len() as f64 / duration as f64,
        "ttft_p50_ms": percentile_ms(&ttft, 50.0),
        "ttft_p99_ms": percentile_ms(&ttft, 99.0),
        "p50_ms": percentile_ms(&total, 50.0),
        "p99_ms": percentile_ms(&total, 99.0),
        "max_ms": total.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
    }))
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn hold(
    target: Target,
    count: usize,
    ramp: u64,
    rss: Vec<String>,
) -> Result<serde_json::Value, String> {
    let processes: Vec<(String, u32)> = rss
        .iter()
        .map(|r| {
            let (name, pid) = r.split_once('=').ok_or(format!("bad --rss {r}"))?;
            Ok((
                name.to_owned(),
                pid.parse().map_err(|_| format!("bad pid in {r}"))?,
            ))
        })
        .collect::<Result<_, String>>()?;
    let idle: Vec<u64> = processes
        .iter()
        .map(|(_, pid)| rss_kib(*pid).unwrap_or(0))
        .collect();
    let peak: Arc<Vec<AtomicU64>> = Arc::new(idle.iter().map(|v| AtomicU64::new(*v)).collect());
    let open = Arc::new(AtomicUsize::new(0));
    let max_open = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    // The sampler: RSS of each process and how many streams are open, every 100 ms.
    let sampler = {
        let (peak, open, max_open, done) =
            (peak.clone(), open.clone(), max_open.clone(), done.clone());
        let pids: Vec<u32> = processes.iter().map(|(_, p)| *p).collect();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = done.notified() => break,
                }
                max_open.fetch_max(open.load(Ordering::Relaxed), Ordering::Relaxed);
                for (i, pid) in pids.iter().enumerate() {
                    if let Some(v) = rss_kib(*pid) {
                        peak[i].fetch_max(v, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let client = Arc::new(Client::new(&target, 0)?);
    let errors = Arc::new(Errors::default());
    let completed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / ramp as f64));
    for worker in 0..count {
        tick.tick().await;
        let (client, errors, completed, open) = (
            client.clone(),
            errors.clone(),
            completed.clone(),
            open.clone(),
        );
        tasks.spawn(async move {
            match client.request(worker, Some(&open)).await {
                Ok(_) => {
                    completed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => errors.add(e).await,
            }
        });
    }
    let ramped = started.elapsed();
    while tasks.join_next().await.is_some() {}
    done.notify_one();
    let _ = sampler.await;
    let after: Vec<u64> = processes
        .iter()
        .map(|(_, pid)| rss_kib(*pid).unwrap_or(0))
        .collect();
    let max_open = max_open.load(Ordering::Relaxed);
    let mut rss_out = serde_json::Map::new();
    for (i, (name, _)) in processes.iter().enumerate() {
        let peak = peak[i].load(Ordering::Relaxed);
        rss_out.insert(
            name.clone(),
            json!({
                "idle_kib": idle[i],
                "peak_kib": peak,
                "after_kib": after[i],
                "per_stream_kib": if max_open > 0 {
                    (peak.saturating_sub(idle[i])) as f64 / max_open as f64
                } else { f64::NAN },
            }),
        );
    }
    Ok(json!({
        "count": count,
        "completed": completed.load(Ordering::Relaxed),
        "errors": errors.count.load(Ordering::Relaxed),
        "error_kinds": errors.json().await,
        "max_open": max_open,
        "ramp_secs": ramped.as_secs_f64(),
        "total_secs": started.elapsed().as_secs_f64(),
        "rss": rss_out,
    }))
}

#[tokio::main]
async fn main() {
    // reqwest is built without a TLS provider of its own in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let result = match args.mode {
        Mode::Run {
            target,
            concurrency,
            rate,
            duration,
            warmup,
        } => run(target, concurrency, rate, duration, warmup).await,
        Mode::Hold {
            target,
            count,
            ramp,
            rss,
        } => hold(target, count, ramp, rss).await,
    };
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("bench-load: {e}");
            std::process::exit(2);
        }
    }
}
