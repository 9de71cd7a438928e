#!/usr/bin/env bash
# End to end with OpenAI's official SDKs: builds Colloquy, starts it on a free port (SQLite
# in a scratch folder, the built-in mock provider), creates a virtual environment with the
# pinned `openai` package from PyPI and runs tests/sdk/openai_sdk.py against the server,
# then the same for the pinned npm package and tests/sdk/openai_sdk.mjs.
# Run by .ci/run; by hand: bash tests/sdk/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

source tests/support/server.sh

# The virtual environment: made once per requirements file, kept beside the build cache.
venv="${SDK_VENV:-$CARGO_TARGET_DIR/sdk-venv}"
stamp="$venv/.requirements"
if ! cmp -s tests/sdk/requirements.txt "$stamp" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
  cp tests/sdk/requirements.txt "$stamp"
fi

# The mock priced, so a budget of 0 refuses it; everything else is the shipped config.
mkdir -p "$work/config"
cat > "$work/config/pricing.toml" <<'TOML'
[models."mock/echo"]
input = 1.0
cached_input = 0.5
output = 2.0
TOML

export COLLOQUY_CONFIG_DIR="$work/config"
export COLLOQUY_CHAT__DIRECT_MODELS='["mock/echo"]'
# Visible streaming: a token every 20 ms.
export COLLOQUY_PROVIDERS__MOCK_TOKEN_INTERVAL_MS=20
# Admins get a chat bucket of 2 (the rate-limit test); users keep the default.
export COLLOQUY_RATE_LIMIT__ROLES__ADMIN__CHAT__CAPACITY=2
export COLLOQUY_RATE_LIMIT__ROLES__ADMIN__CHAT__PER_MINUTE=1
serve_colloquy

USER_TOKEN=$("$bin" token --sub sdk-user --email sdk-user@example.com --role user)
ADMIN_TOKEN=$("$bin" token --sub sdk-admin --email sdk-admin@example.com --role admin)
BROKE_TOKEN=$("$bin" token --sub sdk-broke --email sdk-broke@example.com --role user)
export USER_TOKEN ADMIN_TOKEN BROKE_TOKEN
"$venv/bin/python" tests/sdk/openai_sdk.py || failed "sdk: the Python SDK"

# The npm package, installed once per package.json beside the virtual environment.
node_dir="${SDK_NODE:-$CARGO_TARGET_DIR/sdk-node}"
if ! cmp -s tests/sdk/package.json "$node_dir/package.json" 2>/dev/null; then
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp tests/sdk/package.json "$node_dir/"
  (cd "$node_dir" && npm install --silent --no-audit --no-fund >/dev/null)
fi
cp tests/sdk/openai_sdk.mjs "$node_dir/"
key() { # token, name, role: a new API key's secret
  curl -fs "$base/v1/api-keys" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
    -d "{\"name\": \"$2\", \"role\": \"$3\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])'
}
SDK_KEY=$(key "$USER_TOKEN" node-sdk user)
LIMITED_KEY=$(key "$("$bin" token --sub node-admin --role admin)" node-limited admin)
export SDK_KEY LIMITED_KEY
node --test "$node_dir/openai_sdk.mjs" || failed "sdk: the JavaScript SDK"
