#!/usr/bin/env bash
# The chat page end to end in a real browser: Debian's chromium (apt) driven by the pinned
# playwright-core (npm; Playwright's own browser download is not used) against a freshly
# started Colloquy on the mock provider. Screenshots go to $ARTIFACTS (default
# $CARGO_TARGET_DIR/browser-artifacts). Run by .ci/run; by hand: bash tests/browser/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

source tests/support/server.sh

if ! command -v chromium >/dev/null 2>&1; then
  echo "browser: installing chromium (Debian)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }
fi

# playwright-core, installed once per package.json beside the build cache.
node_dir="${BROWSER_NODE:-$CARGO_TARGET_DIR/browser-node}"
if ! cmp -s tests/browser/package.json "$node_dir/package.json" 2>/dev/null; then
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp tests/browser/package.json "$node_dir/"
  (cd "$node_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --silent --no-audit --no-fund >/dev/null)
fi
cp tests/browser/chat.mjs "$node_dir/"

export ARTIFACTS="${ARTIFACTS:-$(realpath "$CARGO_TARGET_DIR")/browser-artifacts}"
mkdir -p "$ARTIFACTS"

# A token every 40 ms, so the growing answer spans many frames.
export COLLOQUY_PROVIDERS__MOCK_TOKEN_INTERVAL_MS=40
# A chat bucket of 4 with no refill to speak of: the error test spends it.
export COLLOQUY_RATE_LIMIT__CHAT__CAPACITY=4
export COLLOQUY_RATE_LIMIT__CHAT__PER_MINUTE=1
# Admins may chat more: the paging test's conversation is seeded by one.
export COLLOQUY_RATE_LIMIT__ROLES__ADMIN__CHAT__CAPACITY=100
export COLLOQUY_RATE_LIMIT__ROLES__ADMIN__CHAT__PER_MINUTE=600
serve_colloquy

# A conversation of 40 messages for the scroll-up paging test (pages of 30).
PAGER_TOKEN=$("$bin" token --sub pager --role admin)
export PAGER_TOKEN
auth="Authorization: Bearer $PAGER_TOKEN"
conversation=$(curl -fs "$base/v1/conversations" -H "$auth" -H 'Content-Type: application/json' \
  -d '{"title": "A long one", "specialist_id": "general"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
for i in $(seq 1 20); do
  curl -fs "$base/v1/chat/send" -H "$auth" -H 'Content-Type: application/json' \
    -d "{\"specialist_id\": \"general\", \"message\": \"Message number $i\", \"conversation_id\": \"$conversation\"}" >/dev/null
done

node --test --test-concurrency=1 "$node_dir/chat.mjs" \
  || failed "browser: the chat page (screenshots in $ARTIFACTS)"
echo "browser: screenshots in $ARTIFACTS"
