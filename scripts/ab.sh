#!/usr/bin/env bash
# A/B of two cobro binaries on the same machine in the same minutes, for a change on a hot
# path: both serve the same seeded SQLite database in turn, for ROUNDS rounds, and each line
# prints its rate and the server's CPU time per request (user + system, from /proc).
# CPU per request varies far less than the rate when other work shares the machine.
#
#   cargo build --release && cp target/release/cobro /tmp/cobro-before
#   # … the change …
#   cargo build --release && scripts/ab.sh /tmp/cobro-before target/release/cobro 5
#
# AB_DURATION=3   seconds per line
# AB_POST=1       also POST /payments/ (each round adds the payments it creates)
# AB_AUTHORIZE=1  also POST /payments/{id}/authorize/ with a sandbox tok_visa source, each
#                 request on a fresh payment (seeded before each line, as bench.sh does)
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: $0 BINARY_A BINARY_B [ROUNDS]" >&2; exit 2; }
a=$(realpath "$1") b=$(realpath "$2") rounds=${3:-3} duration=${AB_DURATION:-3}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d /tmp/cobro-ab.XXXXXX)
db=$work/ab.db
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
pid=""
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

start() {
    DATABASE_URL=$db COBRO_RATE_LIMIT=0 RUST_LOG=warn "$1" serve --bind "127.0.0.1:$port" \
        >>"$work/out" 2>>"$work/log" &
    pid=$!
    for _ in $(seq 200); do
        curl -sf "$base/health/" >/dev/null && return 0
        sleep 0.1
    done
    cat "$work/log" >&2
    exit 1
}

stop() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
}

# shellcheck source=scripts/bench/seed.sh
source scripts/bench/seed.sh

# The first start bootstraps; 1,000 payments are then seeded as scripts/bench.sh seeds them.
start "$a"
token=$(awk '/^  token:/ { print $2 }' "$work/out")
workspace=$(awk '/^  workspace:/ { print $2 }' "$work/out")
if [[ -n ${AB_AUTHORIZE:-} ]]; then
    source_id=$(curl -sf -X POST "$base/sources/" -H "Authorization: Token $token" \
        -H "x-simple-workspace: $workspace" -H 'x-piriod-test-mode: true' \
        -H 'Content-Type: application/json' \
        -d '{"gateway": "sandbox", "usage": "reusable", "gateway_data": {"token": "tok_visa"}}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
fi
stop
seed_sqlite_payments "$db" "$workspace" 1000
read -r id_min id_max < <(sqlite3 "$db" "SELECT min(id) || ' ' || max(id) FROM payments")

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }

# line PATH [wrk.lua environment…]: "rate/CPU µs per request" of one wrk run.
line() {
    local before after result
    before=$(cpu_ticks)
    result=$(env BENCH_TOKEN="$token" BENCH_WORKSPACE="$workspace" BENCH_PATH="$1" \
        BENCH_ID_MIN="$id_min" BENCH_ID_MAX="$id_max" "${@:2}" \
        wrk -t2 -c32 -d"${duration}s" --timeout 10s -s scripts/bench/wrk.lua "$base" | grep '^BENCH ')
    after=$(cpu_ticks)
    python3 - "${result#BENCH }" "$before" "$after" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
row, before, after, hz = json.loads(sys.argv[1]), *map(int, sys.argv[2:])
print(f"{row['rps']:.0f}/s {(after - before) / hz * 1e6 / row['requests']:.0f} µs")
EOF
}

# to_authorize: seeds payments to charge (test mode, awaiting a payment method) and prints
# the wrk.lua environment that charges each of them once, in turn.
to_authorize() {
    local min max
    sqlite3 "$db" <<EOF
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
INSERT INTO payments ($payment_columns)
SELECT '$workspace', 1, 1000, 0, 'CLP', 1, '2026-11-23', 'to authorize', '[]',
       'requires_payment_method', 0, '{}', 'ab_' || lower(hex(randomblob(12))), 1,
       strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM n;
EOF
    read -r min max < <(sqlite3 "$db" "SELECT (max(id) - 39999) || ' ' || max(id) FROM payments")
    echo "BENCH_ID_MIN=$min BENCH_ID_MAX=$max BENCH_ID_SEQUENTIAL=2 BENCH_TEST_MODE=1"
}

body='{"amount": 1000, "currency": "CLP", "date": "2026-11-23", "description": "ab"}'
for round in $(seq "$rounds"); do
    for which in A B; do
        if [[ -n ${AB_AUTHORIZE:-} ]]; then read -ra charge < <(to_authorize); fi
        if [[ $which == A ]]; then start "$a"; else start "$b"; fi
        echo "round $round $which:" \
            "health $(line /health/)," \
            "by id $(line '/payments/{id}/')," \
            "page $(line '/payments/?page_size=20')," \
            "by status $(line '/payments/?page_size=20&status=succeeded')" \
            "${AB_POST:+, POST $(line /payments/ BENCH_METHOD=POST BENCH_BODY="$body")}" \
            "${AB_AUTHORIZE:+, authorize $(line '/payments/{id}/authorize/' BENCH_METHOD=POST \
                BENCH_BODY="{\"source\": $source_id}" "${charge[@]}")}"
        stop
    done
done
