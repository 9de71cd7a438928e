#!/usr/bin/env bash
# Colloquy's benchmark: builds the release binaries, starts the mock upstream and Colloquy on
# Postgres and on SQLite (JWT auth, rate limiting, access and usage logging all on; limits set
# high), measures every scenario against hitting the mock directly in the same run, and
# writes the tables into bench/RESULTS.md (between the generated-results markers).
#
#   bash bench/run.sh                 # the whole run (~10 minutes on 2 cores)
#   BENCH_DURATION=3 BENCH_STREAMS=1000 bash bench/run.sh   # a quick look
#   BENCH_ONLY=history bash bench/run.sh   # only the history scenario (~5 minutes); the
#                                          # other figures are kept from bench/results/
#
# Needs: Postgres at BENCH_DATABASE_URL (a scratch database colloquy_bench is created there),
# python3, and oha (installed with `cargo install oha --locked` when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10}          # seconds measured per scenario
WARMUP=${BENCH_WARMUP:-2}
CONCURRENCY=${BENCH_CONCURRENCY:-32}    # connections of the closed-loop scenarios
FIXED_RATE=${BENCH_RATE:-1000}          # requests/s of the fixed-rate latency scenario
STREAM_RATE=${BENCH_STREAM_RATE:-200}   # streams/s of the time-to-first-token scenario
STREAMS=${BENCH_STREAMS:-10000}         # slow streams held open at once
STREAM_SECS=${BENCH_STREAM_SECS:-30}    # how long each slow stream lasts (a token per 100 ms)
PG_BASE=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
export CARGO_TERM_COLOR=never

WORK=$(mktemp -d "${TMPDIR:-/tmp}/colloquy-bench.XXXXXX")
RESULTS=$WORK/results
mkdir -p "$RESULTS"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
log() { echo "bench: $*" >&2; }

# Thousands of streams need thousands of descriptors: take the whole hard limit.
ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)

if ! command -v oha >/dev/null 2>&1; then
  log "installing oha"
  cargo install oha --locked --quiet
fi
log "building release binaries"
cargo build --release --locked --quiet -p colloquy -p colloquy-bench
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET_DIR/release
COLLOQUY=$BIN/colloquy

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_mock NAME ARGS...: starts a mock upstream; sets MOCK_PORT and MOCK_PID.
start_mock() {
  local name=$1; shift
  "$BIN/mock-upstream" --listen 127.0.0.1:0 "$@" >"$WORK/$name.log" 2>&1 &
  MOCK_PID=$!
  PIDS+=("$MOCK_PID")
  for _ in $(seq 1 100); do
    if grep -q 'listening on' "$WORK/$name.log"; then break; fi
    sleep 0.05
  done
  MOCK_PORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/$name.log")
  [ -n "$MOCK_PORT" ] || { log "mock $name did not start"; cat "$WORK/$name.log" >&2; exit 1; }
}

# start_colloquy NAME DATABASE_URL MOCK_PORT: sets APP_PORT and APP_PID.
start_colloquy() {
  local name=$1 db=$2 upstream=$3
  APP_PORT=$(free_port)
  env -i PATH="$PATH" HOME="$HOME" \
    COLLOQUY_ENV=development COLLOQUY_CONFIG_DIR="$ROOT/config" \
    COLLOQUY_LISTEN="127.0.0.1:$APP_PORT" DATABASE_URL="$db" \
    COLLOQUY_FILES__LOCAL_DIR="$WORK/files-$name" \
    OPENAI_API_KEY=bench-key OPENAI_BASE_URL="http://127.0.0.1:$upstream/v1" \
    COLLOQUY_DEFAULT_MODEL=openai/gpt-4o-mini \
    COLLOQUY_TELEMETRY__FORMAT=json COLLOQUY_TELEMETRY__FILTER=info \
    COLLOQUY_RATE_LIMIT__CHAT__CAPACITY=1000000000 COLLOQUY_RATE_LIMIT__CHAT__PER_MINUTE=1000000000 \
    COLLOQUY_RATE_LIMIT__READ__CAPACITY=1000000000 COLLOQUY_RATE_LIMIT__READ__PER_MINUTE=1000000000 \
    "$COLLOQUY" serve >"$WORK/$name.log" 2>&1 &
  APP_PID=$!
  PIDS+=("$APP_PID")
  for _ in $(seq 1 200); do
    if curl -fs "http://127.0.0.1:$APP_PORT/ready" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  log "colloquy $name did not become ready"; tail -20 "$WORK/$name.log" >&2; exit 1
}

stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

fresh_pg() {
  psql "$PG_BASE/postgres" -qAtc 'DROP DATABASE IF EXISTS colloquy_bench WITH (FORCE)' >/dev/null
  psql "$PG_BASE/postgres" -qAtc 'CREATE DATABASE colloquy_bench' >/dev/null
  echo "$PG_BASE/colloquy_bench"
}

TOKEN=$(env -i PATH="$PATH" COLLOQUY_CONFIG_DIR="$ROOT/config" "$COLLOQUY" token \
  --sub bench-user --email bench@example.com --role user --ttl 86400)
AUTH="Authorization: Bearer $TOKEN"

SYSTEM="You are a helpful, concise assistant. Answer clearly and say when you are unsure."
SEND_BODY='{"specialist_id":"general","message":"How do I read a balance sheet?","conversation_history":[{"role":"user","content":"Hello"},{"role":"assistant","content":"Hello! How can I help?"}]}'
DIRECT_BODY=$(python3 -c 'import json,sys; print(json.dumps({"model":"gpt-4o-mini","messages":[{"role":"system","content":sys.argv[1]},{"role":"user","content":"Hello"},{"role":"assistant","content":"Hello! How can I help?"},{"role":"user","content":"How do I read a balance sheet?"}],"temperature":0.7,"max_tokens":1024}))' "$SYSTEM")
DIRECT_STREAM_BODY=$(python3 -c 'import json,sys; b=json.loads(sys.argv[1]); b["stream"]=True; b["stream_options"]={"include_usage":True}; print(json.dumps(b))' "$DIRECT_BODY")
printf '%s' "$SEND_BODY" >"$WORK/send.json"
printf '%s' "$DIRECT_BODY" >"$WORK/direct.json"

# oha_json NAME URL BODYFILE [oha args...]: one oha run, its JSON summary kept.
oha_json() {
  local name=$1 url=$2 body=$3; shift 3
  oha --no-tui --output-format json -m POST -T application/json -D "$body" "$@" "$url" \
    >"$RESULTS/$name.json"
}
# oha measures from the first request: a short unmeasured run first warms the pools.
warm() { oha --no-tui -z "${WARMUP}s" -c "$CONCURRENCY" -m POST -T application/json -D "$2" "${@:3}" "$1" >/dev/null; }

load() { "$BIN/bench-load" "$@"; }

# BENCH_ONLY=history runs that scenario alone and renders it with the last full run's figures.
ONLY=${BENCH_ONLY:-}
if [ "$ONLY" = history ]; then
  cp bench/results/*.json "$RESULTS"/
fi
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

if want load; then
# --- Scenarios against the fast mock (no delay, 16 tokens) -----------------------------
start_mock mock-fast --tokens 16
FAST=$MOCK_PORT
DIRECT_URL="http://127.0.0.1:$FAST/v1/chat/completions"

log "direct: send throughput and fixed-rate latency"
warm "$DIRECT_URL" "$WORK/direct.json"
oha_json direct-send-max "$DIRECT_URL" "$WORK/direct.json" -z "${DURATION}s" -c "$CONCURRENCY"
oha_json direct-send-rate "$DIRECT_URL" "$WORK/direct.json" -z "${DURATION}s" -c "$CONCURRENCY" \
  -q "$FIXED_RATE" --latency-correction
log "direct: streams"
load run --url "$DIRECT_URL" --body "$DIRECT_STREAM_BODY" --first-marker '"content"' \
  --end-marker '[DONE]' --rate "$STREAM_RATE" --duration "$DURATION" --warmup "$WARMUP" \
  >"$RESULTS/direct-stream-ttft.json"
load run --url "$DIRECT_URL" --body "$DIRECT_STREAM_BODY" --first-marker '"content"' \
  --end-marker '[DONE]' --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
  >"$RESULTS/direct-stream-max.json"

# The floor: the least any proxy on axum + reqwest costs (bench/src/bin/floor-proxy.rs).
log "floor: send and streams through a bare axum + reqwest passthrough"
start_floor() { # UPSTREAM_PORT: sets FLOOR_PORT and FLOOR_PID
  "$BIN/floor-proxy" --listen 127.0.0.1:0 --upstream "http://127.0.0.1:$1/v1/chat/completions" \
    >"$WORK/floor-$1.log" 2>&1 &
  FLOOR_PID=$!
  PIDS+=("$FLOOR_PID")
  for _ in $(seq 1 100); do
    if grep -q 'listening on' "$WORK/floor-$1.log"; then break; fi
    sleep 0.05
  done
  FLOOR_PORT=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/floor-$1.log")
}
start_floor "$FAST"
FLOOR_URL="http://127.0.0.1:$FLOOR_PORT"
echo '{}' >"$WORK/empty.json"
warm "$FLOOR_URL/v1/chat/send" "$WORK/empty.json"
oha_json floor-send-max "$FLOOR_URL/v1/chat/send" "$WORK/empty.json" -z "${DURATION}s" -c "$CONCURRENCY"
oha_json floor-send-rate "$FLOOR_URL/v1/chat/send" "$WORK/empty.json" -z "${DURATION}s" -c "$CONCURRENCY" \
  -q "$FIXED_RATE" --latency-correction
load run --url "$FLOOR_URL/v1/chat/stream" --body '{}' --first-marker '"content"' \
  --end-marker '[DONE]' --rate "$STREAM_RATE" --duration "$DURATION" --warmup "$WARMUP" \
  >"$RESULTS/floor-stream-ttft.json"
stop "$FLOOR_PID"

for backend in postgres sqlite; do
  if [ "$backend" = postgres ]; then DB=$(fresh_pg); else DB="sqlite://$WORK/sqlite/colloquy.db"; fi
  start_colloquy "colloquy-$backend" "$DB" "$FAST"
  BASE="http://127.0.0.1:$APP_PORT"
  log "$backend: idle RSS"
  grep VmRSS "/proc/$APP_PID/status" | awk '{print "{\"rss_kib\":" $2 "}"}' >"$RESULTS/$backend-idle.json"

  log "$backend: send, stateless"
  warm "$BASE/v1/chat/send" "$WORK/send.json" -H "$AUTH"
  oha_json "$backend-send-max" "$BASE/v1/chat/send" "$WORK/send.json" -H "$AUTH" \
    -z "${DURATION}s" -c "$CONCURRENCY"
  oha_json "$backend-send-rate" "$BASE/v1/chat/send" "$WORK/send.json" -H "$AUTH" \
    -z "${DURATION}s" -c "$CONCURRENCY" -q "$FIXED_RATE" --latency-correction

  log "$backend: send, with a conversation (one per connection)"
  : >"$WORK/conv-$backend.jsonl"
  for _ in $(seq 1 "$CONCURRENCY"); do
    id=$(curl -fs "$BASE/v1/conversations" -H "$AUTH" -H 'Content-Type: application/json' \
      -d '{"specialist_id":"general"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    echo "{\"specialist_id\":\"general\",\"message\":\"How do I read a balance sheet?\",\"conversation_id\":\"$id\"}" \
      >>"$WORK/conv-$backend.jsonl"
  done
  load run --url "$BASE/v1/chat/send" -H "$AUTH" --bodies "$WORK/conv-$backend.jsonl" \
    --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
    >"$RESULTS/$backend-send-conversation.json"

  log "$backend: streams"
  load run --url "$BASE/v1/chat/stream" -H "$AUTH" --body "$SEND_BODY" \
    --first-marker 'event: delta' --end-marker 'event: done' \
    --rate "$STREAM_RATE" --duration "$DURATION" --warmup "$WARMUP" \
    >"$RESULTS/$backend-stream-ttft.json"
  load run --url "$BASE/v1/chat/stream" -H "$AUTH" --body "$SEND_BODY" \
    --first-marker 'event: delta' --end-marker 'event: done' \
    --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
    >"$RESULTS/$backend-stream-max.json"
  grep VmRSS "/proc/$APP_PID/status" | awk '{print "{\"rss_kib\":" $2 "}"}' >"$RESULTS/$backend-after-load.json"
  stop "$APP_PID"
done
stop "$MOCK_PID"

# --- Many slow streams: a token every 100 ms ------------------------------------------
SLOW_TOKENS=$((STREAM_SECS * 10))
# Each Colloquy stream holds two descriptors (its client's connection and its upstream's):
# the count through Colloquy is fitted under the process's file limit, which an unprivileged
# process cannot raise past its hard limit (20,000 on the benchmark machine).
H1_STREAMS=$(( STREAMS < (FD_LIMIT - 300) / 2 ? STREAMS : (FD_LIMIT - 300) / 2 ))

log "direct: $STREAMS slow streams held open"
start_mock mock-slow --tokens "$SLOW_TOKENS" --token-ms 100
load hold --url "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" --body "$DIRECT_STREAM_BODY" \
  --end-marker '[DONE]' --count "$STREAMS" --rss "mock=$MOCK_PID" >"$RESULTS/direct-hold.json"
stop "$MOCK_PID"

log "floor: $H1_STREAMS slow streams held open through the bare passthrough"
start_mock mock-slow-floor --tokens "$SLOW_TOKENS" --token-ms 100
start_floor "$MOCK_PORT"
load hold --url "http://127.0.0.1:$FLOOR_PORT/v1/chat/stream" --body '{}' \
  --end-marker '[DONE]' --count "$H1_STREAMS" \
  --rss "floor=$FLOOR_PID" --rss "mock=$MOCK_PID" >"$RESULTS/floor-hold.json"
stop "$FLOOR_PID"
stop "$MOCK_PID"

log "postgres: $H1_STREAMS slow streams held open through Colloquy"
start_mock mock-slow-colloquy --tokens "$SLOW_TOKENS" --token-ms 100
start_colloquy colloquy-hold "$(fresh_pg)" "$MOCK_PORT"
load hold --url "http://127.0.0.1:$APP_PORT/v1/chat/stream" -H "$AUTH" --body "$SEND_BODY" \
  --end-marker 'event: done' --count "$H1_STREAMS" \
  --rss "colloquy=$APP_PID" --rss "mock=$MOCK_PID" >"$RESULTS/postgres-hold.json"
stop "$APP_PID"
stop "$MOCK_PID"
fi

# --- History: paging a 100,000-message conversation, search over 1,000,000 messages -----
if want history; then
  log "postgres: seeding 1,000,000 messages (bench/history.sql)"
  start_mock mock-history --tokens 16
  start_colloquy colloquy-history "$(fresh_pg)" "$MOCK_PORT"
  seed_start=$(date +%s)
  psql "$PG_BASE/colloquy_bench" -q -f bench/history.sql >/dev/null
  SEED_SECS=$(( $(date +%s) - seed_start ))
  BASE="http://127.0.0.1:$APP_PORT"
  LONG=01900000-0000-7000-8000-000000000000
  # get NAME REQUESTS PATH: sequential GETs (one connection), after a short warm-up.
  get() {
    local name=$1 n=$2 path=$3
    oha --no-tui -n 3 -c 1 -H "$AUTH" "$BASE$path" >/dev/null
    oha --no-tui --output-format json -n "$n" -c 1 -H "$AUTH" "$BASE$path" >"$RESULTS/history-$name.json"
  }
  log "postgres: history paging"
  get page-newest 500 "/v1/conversations/$LONG/messages?limit=50"
  get page-middle 500 "/v1/conversations/$LONG/messages?limit=50&before=50001"
  get page-oldest 500 "/v1/conversations/$LONG/messages?limit=50&before=51"
  get open 500 "/v1/conversations/$LONG"
  get list 500 "/v1/conversations?limit=50"
  log "postgres: search"
  get search-two-words 200 "/v1/search?q=term17%20term1234&limit=20"
  get search-one-word 100 "/v1/search?q=term17&limit=20"
  CURSOR=$(curl -fs "$BASE/v1/search?q=term17&limit=20" -H "$AUTH" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next_cursor"])')
  get search-one-word-page2 100 "/v1/search?q=term17&limit=20&cursor=$CURSOR"
  get search-every-message 5 "/v1/search?q=message&limit=20"
  HITS_ONE=$(psql "$PG_BASE/colloquy_bench" -qAtc "SELECT count(*) FROM messages WHERE search @@ websearch_to_tsquery('simple', '\"term17\"')")
  HITS_TWO=$(psql "$PG_BASE/colloquy_bench" -qAtc "SELECT count(*) FROM messages WHERE search @@ websearch_to_tsquery('simple', '\"term17\" \"term1234\"')")
  echo "{\"messages\": 1000000, \"long_conversation\": 100000, \"seed_secs\": $SEED_SECS, \"hits_one_word\": $HITS_ONE, \"hits_two_words\": $HITS_TWO}" >"$RESULTS/history.json"
  stop "$APP_PID"
  stop "$MOCK_PID"
fi

if want load; then
# --- The record -------------------------------------------------------------------------
{
  echo "{"
  echo "\"date\": \"$(date -u +%Y-%m-%dT%H:%MZ)\","
  echo "\"commit\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +dirty)\","
  echo "\"cpu\": \"$(lscpu | sed -n 's/^Model name: *//p' | head -1)\","
  echo "\"cores\": $(nproc),"
  echo "\"memory\": \"$(free -g | awk '/Mem:/{print $2}') GiB\","
  echo "\"kernel\": \"$(uname -r)\","
  echo "\"rustc\": \"$(rustc --version)\","
  echo "\"oha\": \"$(oha --version | head -1)\","
  echo "\"postgres\": \"$(psql "$PG_BASE/postgres" -qAtc 'SHOW server_version')\","
  echo "\"fd_limit\": $FD_LIMIT,"
  echo "\"duration\": $DURATION, \"warmup\": $WARMUP, \"concurrency\": $CONCURRENCY, \"fixed_rate\": $FIXED_RATE,"
  echo "\"stream_rate\": $STREAM_RATE, \"streams\": $STREAMS, \"h1_streams\": $H1_STREAMS,"
  echo "\"stream_secs\": $STREAM_SECS"
  echo "}"
} >"$RESULTS/machine.json"
fi
python3 bench/report.py "$RESULTS" bench/RESULTS.md
mkdir -p bench/results
cp "$RESULTS"/*.json bench/results/
log "done: bench/RESULTS.md updated; raw figures in bench/results/"
