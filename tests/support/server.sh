# Sourced by the end-to-end scripts (tests/sdk/run.sh, tests/browser/run.sh): builds the
# debug binary, and starts and stops one Colloquy on a free port with SQLite in a scratch
# folder. After `serve_colloquy`: $bin, $work, $base (also exported as COLLOQUY_BASE_URL).
# Settings come from the caller's environment (COLLOQUY_*), exported before the call.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --locked --quiet --bin colloquy
bin="$(realpath "$CARGO_TARGET_DIR")/debug/colloquy"

work=$(mktemp -d)
server=""
stop_colloquy() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap stop_colloquy EXIT

serve_colloquy() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export COLLOQUY_LISTEN="127.0.0.1:$port"
  export DATABASE_URL="sqlite://$work/colloquy.db"
  # From the scratch folder: the files folder (data/files) lands there too.
  (cd "$work" && exec "$bin" serve) >"$work/server.log" 2>&1 &
  server=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    if curl -fs "$base/ready" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then cat "$work/server.log" >&2; exit 1; fi
    sleep 0.1
  done
  export COLLOQUY_BASE_URL="$base"
}

# failed WHAT: says WHAT failed, shows the server's log, and exits 1.
failed() {
  echo "$1 failed; the server's log:" >&2
  tail -n 50 "$work/server.log" >&2
  exit 1
}
