#!/usr/bin/env bash
# Instructions per request, counted by callgrind: unlike timings, the count is the same run
# after run whatever else the machine is doing, so it shows what a change to the hot path
# saved. Runs Colloquy (release build) under valgrind against the fast mock upstream,
# warms it up, then counts N stateless /v1/chat/send requests and N streams.
#
#   bash bench/instructions.sh            # prints instructions per request
#   KEEP=1 bash bench/instructions.sh     # also keeps the callgrind files, for
#                                         # callgrind_annotate --inclusive=yes <file>
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-1000}
PG_BASE=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
command -v oha >/dev/null || cargo install oha --locked --quiet
cargo build --release --locked --quiet -p colloquy -p colloquy-bench
BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release

WORK=$(mktemp -d "${TMPDIR:-/tmp}/colloquy-cg.XXXXXX")
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MOCK=$(free_port)
"$BIN/mock-upstream" --listen "127.0.0.1:$MOCK" --tokens 16 >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
psql "$PG_BASE/postgres" -qAtc 'DROP DATABASE IF EXISTS colloquy_cg WITH (FORCE)' >/dev/null 2>&1
psql "$PG_BASE/postgres" -qAtc 'CREATE DATABASE colloquy_cg' >/dev/null
APP=$(free_port)
env -i PATH="$PATH" HOME="$HOME" COLLOQUY_ENV=development COLLOQUY_CONFIG_DIR="$ROOT/config" \
  COLLOQUY_LISTEN="127.0.0.1:$APP" DATABASE_URL="$PG_BASE/colloquy_cg" \
  COLLOQUY_FILES__LOCAL_DIR="$WORK/files" \
  OPENAI_API_KEY=bench-key OPENAI_BASE_URL="http://127.0.0.1:$MOCK/v1" \
  COLLOQUY_DEFAULT_MODEL=openai/gpt-4o-mini COLLOQUY_TELEMETRY__FORMAT=json \
  COLLOQUY_RATE_LIMIT__CHAT__CAPACITY=1000000000 COLLOQUY_RATE_LIMIT__CHAT__PER_MINUTE=1000000000 \
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN/colloquy" serve \
  >"$WORK/colloquy.log" 2>&1 &
VG=$!
PIDS+=("$VG")
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$APP/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
TOKEN=$(env -i PATH="$PATH" COLLOQUY_CONFIG_DIR="$ROOT/config" "$BIN/colloquy" token --sub bench-user --email bench@example.com)
BODY='{"specialist_id":"general","message":"How do I read a balance sheet?","conversation_history":[{"role":"user","content":"Hello"},{"role":"assistant","content":"Hello! How can I help?"}]}'
printf '%s' "$BODY" >"$WORK/send.json"
send() { oha --no-tui -n "$1" -c 4 -m POST -T application/json -D "$WORK/send.json" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$APP$2" >/dev/null; }
count() { # label path: zero the counters, run N requests, dump, print instructions per request
  callgrind_control -z "$VG" >/dev/null
  send "$N" "$2"
  sleep 1
  callgrind_control --dump "$VG" >/dev/null
  sleep 1
  local file total
  file=$(ls -t "$WORK"/cg.out* | head -1)
  total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
  echo "$1: $((total / N)) instructions per request ($N requests, $file)"
}
send 200 /v1/chat/send
send 200 /v1/chat/stream
count "send, stateless" /v1/chat/send
count "stream, stateless" /v1/chat/stream
if [ -n "${KEEP:-}" ]; then
  mkdir -p bench/results
  cp "$WORK"/cg.out* bench/results/ 2>/dev/null || true
fi
