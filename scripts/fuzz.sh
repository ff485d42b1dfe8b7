#!/usr/bin/env bash
# Fuzzes the API with schemathesis against its own /openapi.json, with a real token: every
# operation gets generated requests, valid and invalid, and every answer must be a non-5xx
# whose status, content type and body match the spec.
#
#   ./scripts/fuzz.sh                   # SQLite (live mode); also PostgreSQL (test mode)
#                                       # when TEST_DATABASE_URL is set
#   FUZZ_EXAMPLES=100 ./scripts/fuzz.sh # more cases per operation (default 40)
#
# schemathesis comes from PyPI into target/fuzz-venv the first time (about 20 s).
# scripts/test.sh runs this after the tests when RUN_FUZZ=1 (as .ci/run does).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCHEMATHESIS_VERSION=4.32.5
examples=${FUZZ_EXAMPLES:-40}
venv=target/fuzz-venv

if [[ ! -x $venv/bin/st ]] || [[ $("$venv/bin/st" --version 2>/dev/null) != *"$SCHEMATHESIS_VERSION"* ]]; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin cobro
cobro=target/debug/cobro
work=$(mktemp -d)
server=""
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# fuzz <label> <database url> <test mode: true|false>
fuzz() {
    local label=$1 url=$2 mode=$3
    local email="fuzz-$RANDOM$RANDOM@example.com"
    local token workspace port
    token=$(DATABASE_URL=$url "$cobro" user create "$email")
    workspace=$(DATABASE_URL=$url "$cobro" workspace create "Fuzz" --owner "$email")
    port=$(free_port)
    DATABASE_URL=$url COBRO_BIND=127.0.0.1:$port COBRO_RATE_LIMIT=0 RUST_LOG=warn \
        "$cobro" serve --no-bootstrap >"$work/$label.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/health/', timeout=1)" \
            2>/dev/null && break
        sleep 0.1
    done
    echo "==> schemathesis on $label (test mode: $mode), $examples cases per operation"
    local status=0
    "$venv/bin/st" run "http://127.0.0.1:$port/openapi.json" \
        --header "Authorization: Token $token" \
        --header "x-simple-workspace: $workspace" \
        --header "x-piriod-test-mode: $mode" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --max-examples "$examples" --generation-database none --no-color ||
        status=$?
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
    if ((status != 0)); then
        echo "error: schemathesis found problems on $label; the server's log:" >&2
        tail -n 50 "$work/$label.log" >&2
        exit "$status"
    fi
}

fuzz sqlite "$work/fuzz.db" false
if [[ -n ${TEST_DATABASE_URL:-} ]]; then
    fuzz postgresql "$TEST_DATABASE_URL" true
fi
