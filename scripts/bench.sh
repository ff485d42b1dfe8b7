#!/usr/bin/env bash
# The benchmark: cobro's release binary on SQLite, then on a throwaway PostgreSQL with
# durable settings (fsync and synchronous_commit on), driven by wrk at a fixed concurrency.
#
#   ./scripts/bench.sh
#
# It measures, per backend: GET /health/ (the HTTP stack alone); GET /payments/{id}/,
# GET /payments/?page_size=20 and the same page filtered by status, on a workspace of
# 10,000 and then of 1,000,000 payments; POST /payments/, alone and while 16 charges wait
# on a provider that takes 3 s to answer (the sandbox's slow card: no write may wait behind
# a provider's call); and on PostgreSQL, pgbench running the same INSERT pair (payment and
# event, one transaction) at the same concurrency (the database alone). It prints a table
# and writes target/bench/results.json. The cost of metrics: POST /payments/ and the last
# GET /payments/{id}/ with metrics off and on (COBRO_METRICS_TOKEN, scraped every second),
# alternating in three rounds of BENCH_METRICS_DURATION (4) seconds; the median ratio is
# printed.
#
# BENCH_CONCURRENCY=32       connections (wrk and pgbench)
# BENCH_DURATION=10          seconds per measurement
# BENCH_SIZES="10000 1000000"  workspace sizes for the reads
# BENCH_BACKENDS="sqlite postgresql"
# BENCH_PERF='POST /payments/|GET /payments/{id}/*'
#                            profile the lines whose whole name matches one of these patterns
#                            (globs, separated by |) with `perf record -a -g` (the whole
#                            machine: cobro, PostgreSQL and wrk); the data goes to
#                            target/bench/perf/, and the CPU split per program and cobro's
#                            hottest functions are printed
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

concurrency=${BENCH_CONCURRENCY:-32}
duration=${BENCH_DURATION:-10}
sizes=${BENCH_SIZES:-"10000 1000000"}
backends=${BENCH_BACKENDS:-"sqlite postgresql"}
threads=2

if ! command -v wrk >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing wrk"
        apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
    else
        echo "error: wrk is not installed (apt-get install wrk)" >&2
        exit 1
    fi
fi

if [[ -n ${BENCH_PERF:-} ]] && ! command -v perf >/dev/null; then
    echo "error: BENCH_PERF needs perf (apt-get install linux-perf)" >&2
    exit 1
fi

echo "building the release binary and the bench's tools (examples/)"
cargo build --release --quiet --bins --examples
bin=$PWD/target/release/cobro
tools=$PWD/target/release/examples
out=target/bench
mkdir -p "$out"
work=$(mktemp -d /tmp/cobro-bench.XXXXXX)
rows=$work/rows.jsonl
: >"$rows"

# shellcheck source=scripts/pg-cluster.sh
source scripts/pg-cluster.sh

server_pid=""
others=() # a second server, the webhook receiver
cleanup() {
    local pid
    for pid in $server_pid "${others[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    stop_cluster
    chmod -R a+rwX "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The server's peak resident memory so far (VmHWM), in MB; null with no server running.
peak_rss_mb() {
    if [[ -n $server_pid ]]; then
        awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"
    else
        echo null
    fi
}

rss_mb() {
    awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"
}

# pool_for URL CONNECTIONS: on PostgreSQL, a pool as large as the load's connections (the
# database then sees as many sessions as pgbench's); SQLite's readers keep the default.
pool_for() {
    [[ $1 == postgres* ]] && echo "COBRO_DB_POOL_SIZE=$2"
    return 0
}

# serve URL PORT CONNECTIONS OUT LOG [VAR=value…]: `cobro serve` on URL in the background
# (its pid in $!), sized for CONNECTIONS, with more environment if given.
serve() {
    local url=$1 port=$2 connections=$3 out=$4 log=$5
    shift 5
    # The benchmark sends as fast as it can: no rate limit.
    env DATABASE_URL="$url" COBRO_RATE_LIMIT=0 RUST_LOG=warn $(pool_for "$url" "$connections") "$@" \
        "$bin" serve --bind "127.0.0.1:$port" >"$out" 2>"$log" &
}

# wait_healthy BASE: waits (up to 20 s) for a server's GET /health/.
wait_healthy() {
    for _ in $(seq 200); do
        curl -sf "$1/health/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
}

# start_server URL [VAR=value…]: a `cobro serve` on URL, with more environment if given;
# sets base, token, workspace. The first start on a database reads the bootstrap's token; a
# restart keeps it.
start_server() {
    local url=$1 port new_token
    shift
    port=$(free_port)
    base="http://127.0.0.1:$port"
    serve "$url" "$port" "$concurrency" "$work/serve.out" "$work/serve.log" "$@"
    server_pid=$!
    wait_healthy "$base"
    new_token=$(awk '/^  token:/ { print $2 }' "$work/serve.out")
    if [[ -n $new_token ]]; then
        token=$new_token
        workspace=$(awk '/^  workspace:/ { print $2 }' "$work/serve.out")
    fi
    [[ -n ${token:-} && -n ${workspace:-} ]] || { cat "$work/serve.log" >&2; echo "error: no bootstrap" >&2; exit 1; }
}

stop_server() {
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# wrk_line BASE CONNECTIONS PATH [wrk.lua environment…]: one wrk run; prints its BENCH line.
wrk_line() {
    local base=$1 connections=$2 path=$3
    shift 3
    env BENCH_PATH="$path" "$@" wrk -t"$threads" -c"$connections" -d"${duration}s" \
        --timeout 10s -s scripts/bench/wrk.lua "$base" | grep '^BENCH ' | cut -c7-
}

# add_row BACKEND NAME JSON: appends a row (JSON's fields, and the server's peak RSS) and
# prints it.
add_row() {
    python3 - "$1" "$2" "$(peak_rss_mb)" "$3" >>"$rows" <<'EOF'
import json, sys
backend, name, rss, line = sys.argv[1:]
row = {"backend": backend, "name": name, **json.loads(line), "peak_rss_mb": json.loads(rss)}
if row.get("non_2xx") or row.get("socket_errors"):
    print(f"warning: {backend} {name}: {row['non_2xx']} non-2xx answers, {row['socket_errors']} socket errors", file=sys.stderr)
print(json.dumps(row))
rss = f"  peak RSS {row['peak_rss_mb']:>6.1f} MB" if row["peak_rss_mb"] is not None else ""
extra = "".join(f"  {k} {v}" for k, v in row.items() if k in ("backlog", "drain_s", "lag_s", "rows_written"))
latency = "".join(f"  {q} {row[q + '_ms']:>7.2f} ms" for q in ("p50", "p99") if row.get(q + "_ms") is not None)
print(f"  {name:<44} {row['rps']:>9.0f} req/s{latency}{rss}{extra}", file=sys.stderr)
EOF
}

# profiled NAME: whether BENCH_PERF asks for a profile of this line.
profiled() {
    local pattern
    [[ -n ${BENCH_PERF:-} ]] || return 1
    IFS='|' read -ra patterns <<<"$BENCH_PERF"
    for pattern in "${patterns[@]}"; do
        # shellcheck disable=SC2053 # the pattern is a glob
        [[ $1 == $pattern ]] && return 0
    done
    return 1
}

# measure BACKEND NAME PATH [wrk.lua environment…]: one wrk run; appends a row.
measure() {
    local backend=$1 name=$2 path=$3
    shift 3
    local line perf_pid="" perf_data=""
    if profiled "$name"; then
        mkdir -p "$out/perf"
        perf_data="$out/perf/$backend-$(tr -c 'a-zA-Z0-9\n' - <<<"$name" | tr -s -).data"
        perf record -a -g -F 499 -o "$perf_data" -- sleep "$duration" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    line=$(wrk_line "$base" "$concurrency" "$path" "$@")
    add_row "$backend" "$name" "$line"
    if [[ -n $perf_pid ]]; then
        wait "$perf_pid" || true
        echo "    CPU by program ($perf_data; perf report -i … for the call graphs):"
        perf report -i "$perf_data" --no-children --sort comm -g none 2>/dev/null |
            awk '/^ +[0-9.]+%/ && n++ < 6 { print "     " $0 }'
        echo "    cobro's hottest functions (self):"
        perf report -i "$perf_data" --pid "$server_pid" --no-children --sort symbol -g none 2>/dev/null |
            awk '/^ +[0-9.]+%/ && n++ < 25 { sub(/ +-  .*$/, ""); print "     " $0 }'
    fi
}

# slow_charges SECONDS: keeps 16 charges in flight at the sandbox's slow card (it answers
# after 3 s), in test mode, for SECONDS; prints how many were answered once they are done.
slow_charges() {
    local seconds=$1 auth=(-H "Authorization: Token $token" -H "x-simple-workspace: $workspace"
        -H 'x-piriod-test-mode: true' -H 'Content-Type: application/json')
    local made id source
    # The first "id" of a payment's or a source's JSON is its own; no interpreter per charge,
    # so that the driver takes little of the machine from what is measured.
    first_id() { [[ $1 =~ \"id\":([0-9]+) ]] && echo "${BASH_REMATCH[1]}"; }
    for _ in $(seq 16); do
        (
            end=$((SECONDS + seconds))
            while ((SECONDS < end)); do
                made=$(curl -sf -X POST "$base/payments/" "${auth[@]}" \
                    -d '{"amount": 1000, "currency": "CLP", "date": "2026-11-23", "description": "slow"}')
                id=$(first_id "$made")
                made=$(curl -sf -X POST "$base/sources/" "${auth[@]}" \
                    -d '{"gateway": "sandbox", "gateway_data": {"token": "tok_slow"}}')
                source=$(first_id "$made")
                curl -sf -X POST "$base/payments/$id/authorize/" "${auth[@]}" \
                    -d "{\"source\": $source}" -o /dev/null && echo answered
            done
        ) &
    done
    wait
}

# shellcheck source=scripts/bench/seed.sh
source scripts/bench/seed.sh

# seed BACKEND URL NAME COUNT: a workspace (owned by the bootstrap user) holding COUNT
# payments, written by SQL, and their counts (payment_counts); prints "workspace min_id
# max_id".
seed() {
    local backend=$1 url=$2 name=$3 count=$4 ws
    ws=$(DATABASE_URL=$url "$bin" workspace create --owner admin@cobro.local "$name" --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    # 60 % succeeded, 20 % awaiting payment, 20 % cancelled; one a second from 2026-01-01.
    if [[ $backend == sqlite ]]; then
        seed_sqlite_payments "$url" "$ws" "$count"
        echo "$ws $(sqlite3 "$url" "SELECT min(id) || ' ' || max(id) FROM payments WHERE workspace_id = '$ws'")"
    else
        # A bulk load: the row triggers that keep payment_counts are off for this session
        # (a million updates of the same few count rows in one transaction is slow on
        # PostgreSQL), and the counts are written once at the end.
        "$pg_psql" -X -q -v ON_ERROR_STOP=1 "$url" <<EOF
SET session_replication_role = replica;
INSERT INTO payments ($payment_columns)
SELECT '$ws', false, 1000 + (i % 997) * 100,
       CASE WHEN i % 5 < 3 THEN 1000 + (i % 997) * 100 ELSE 0 END,
       'CLP', 1, DATE '2026-01-01' + (i % 300), 'seeded payment ' || i, '[]',
       CASE WHEN i % 5 < 3 THEN 'succeeded' WHEN i % 5 = 3 THEN 'requires_payment_method' ELSE 'cancelled' END,
       false, '{}', 'seed_${ws}_' || i, 1,
       TIMESTAMP '2026-01-01' + i * INTERVAL '1 second', TIMESTAMP '2026-01-01' + i * INTERVAL '1 second'
FROM generate_series(1, $count) AS i;
INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
SELECT workspace_id, test_mode, status, currency, 0, count(*) FROM payments
WHERE workspace_id = '$ws' GROUP BY workspace_id, test_mode, status, currency;
VACUUM ANALYZE payments;
EOF
        echo "$ws $("$pg_psql" -X -At "$url" -c "SELECT min(id) || ' ' || max(id) FROM payments WHERE workspace_id = '$ws'")"
    fi
}

# pgbench_ceiling URL: the INSERT pair of a create in the bootstrap's workspace, alone;
# appends a row.
pgbench_ceiling() {
    local url=$1 ws=$workspace payment event
    # A payment and its event as cobro writes them (the event's data is the payment's JSON).
    payment=$(api POST /payments/ -d "$body")
    event=${payment//\'/\'\'}
    cat >"$work/pair.sql" <<EOF
BEGIN;
INSERT INTO payments (workspace_id, test_mode, amount, collected, currency, unit, date, description, sources, status, enable_checkout, metadata, checkout_key, version, created, updated)
VALUES ('$ws', false, 1000, 0, 'CLP', 1, CURRENT_DATE, 'bench', '[]', 'requires_payment_method', false, '{}', gen_random_uuid()::text, 1, now(), now()) RETURNING id \gset
INSERT INTO events (workspace_id, test_mode, event_type, object_type, object_id, data, created)
VALUES ('$ws', false, 'payment.created', 'payment', :id, '$event', now());
END;
EOF
    local tps p50 p99
    "$pg_bin/pgbench" -n -r -c "$concurrency" -j "$threads" -T "$duration" -l \
        --log-prefix="$work/pgbench" -f "$work/pair.sql" "$url" >"$work/pgbench-report" 2>&1 ||
        { cat "$work/pgbench-report" >&2; exit 1; }
    tps=$(awk '/^tps = / { print $3; exit }' "$work/pgbench-report")
    # Per-transaction latencies (µs, third column) from the logs.
    read -r p50 p99 < <(cat "$work"/pgbench.* | awk '{ print $3 }' | sort -n |
        awk '{ v[NR] = $1 } END { printf "%.3f %.3f\n", v[int(NR * 0.5)] / 1000, v[int(NR * 0.99)] / 1000 }')
    python3 - "$tps" "$p50" "$p99" "$duration" >>"$rows" <<'EOF'
import json, sys
tps, p50, p99, duration = map(float, sys.argv[1:])
print(json.dumps({"backend": "postgresql", "name": "pgbench: INSERT payment + event (ceiling)",
                  "requests": round(tps * duration), "seconds": duration, "rps": tps,
                  "p50_ms": p50, "p99_ms": p99, "non_2xx": 0, "socket_errors": 0,
                  "peak_rss_mb": None}))
print(f"  {'pgbench: INSERT payment + event (ceiling)':<44} {tps:>9.0f} tx/s   p50 {p50:>7.2f} ms  p99 {p99:>7.2f} ms", file=sys.stderr)
EOF
    rm -f "$work"/pgbench.*
}

# sql BACKEND URL QUERY: one value from the database.
sql() {
    if [[ $1 == sqlite ]]; then
        sqlite3 "$2" "$3"
    else
        "$pg_psql" -X -At "$2" -c "$3"
    fi
}

# api METHOD PATH [curl arguments…]: the bootstrap user's request in its workspace.
api() {
    local method=$1 path=$2
    shift 2
    curl -sf -X "$method" "$base$path" -H "Authorization: Token $token" \
        -H "x-simple-workspace: $workspace" -H 'Content-Type: application/json' "$@"
}

# sqlite_ceiling URL: the rows of a create written by SQLite alone, in batches of
# BENCH_CONCURRENCY (examples/sqlite_ceiling.rs), while the server is stopped; appends a row.
sqlite_ceiling() {
    local url=$1 line
    api POST /payments/ -d "$body" >"$work/event.json"
    stop_server
    line=$("$tools/sqlite_ceiling" "$url" "$workspace" "$duration" "$concurrency" "$work/event.json" |
        grep '^BENCH ' | cut -c7-)
    add_row sqlite "SQLite: the rows of a create (ceiling)" "$line"
    start_server "$url"
}

# authorize_line BACKEND URL: POST /payments/{id}/authorize/ in test mode with a sandbox
# tok_visa source saved beforehand, each request on a fresh payment seeded by SQL.
authorize_line() {
    local backend=$1 url=$2 source min max count=100000
    source=$(api POST /sources/ -H 'x-piriod-test-mode: true' \
        -d '{"gateway": "sandbox", "usage": "reusable", "gateway_data": {"token": "tok_visa"}}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    if [[ $backend == sqlite ]]; then
        sqlite3 "$url" <<EOF
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count)
INSERT INTO payments ($payment_columns)
SELECT '$workspace', 1, 1000, 0, 'CLP', 1, '2026-11-23', 'to authorize ' || i, '[]',
       'requires_payment_method', 0, '{}', 'authorize_' || i, 1,
       strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM n;
EOF
    else
        "$pg_psql" -X -q -v ON_ERROR_STOP=1 "$url" <<EOF
SET session_replication_role = replica;
INSERT INTO payments ($payment_columns)
SELECT '$workspace', true, 1000, 0, 'CLP', 1, DATE '2026-11-23', 'to authorize ' || i, '[]',
       'requires_payment_method', false, '{}', 'authorize_' || i, 1, now(), now()
FROM generate_series(1, $count) AS i;
INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
VALUES ('$workspace', true, 'requires_payment_method', 'CLP', 0, $count)
ON CONFLICT (workspace_id, test_mode, status, currency, slot)
DO UPDATE SET n = payment_counts.n + EXCLUDED.n;
-- Statistics that know this workspace's new rows (see the README: without them the
-- planner reaches a payment by id through the workspace's index, row by row).
ANALYZE payments;
EOF
    fi
    read -r min max < <(sql "$backend" "$url" "SELECT min(id) || ' ' || max(id) FROM payments
        WHERE workspace_id = '$workspace' AND checkout_key LIKE 'authorize_%'")
    measure "$backend" "POST /payments/{id}/authorize/ (sandbox)" "/payments/{id}/authorize/" \
        BENCH_METHOD=POST BENCH_TOKEN="$token" BENCH_WORKSPACE="$workspace" BENCH_TEST_MODE=1 \
        BENCH_BODY="{\"source\": $source}" BENCH_ID_MIN="$min" BENCH_ID_MAX="$max" \
        BENCH_ID_SEQUENTIAL="$threads"
}

# received PORT: the receiver's count, and its first and last delivery (ms). Read by a
# pattern, not an interpreter: it runs ten times a second during a drain, and a Python's
# start each time took a sixth of the machine from what was measured.
received() {
    local stats
    stats=$(curl -sf "http://127.0.0.1:$1/stats") || return 1
    [[ $stats =~ \"count\":([0-9]+),\"first_ms\":([0-9]+),\"last_ms\":([0-9]+) ]] || return 1
    echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]} ${BASH_REMATCH[3]}"
}

# wait_received PORT N: waits (up to 5 minutes) until the receiver has N deliveries.
wait_received() {
    local count first last
    for _ in $(seq 3000); do
        read -r count first last < <(received "$1")
        ((count >= $2)) && return 0
        sleep 0.1
    done
    echo "warning: the receiver has $count of $2 deliveries after 5 minutes" >&2
}

# webhook_lines BACKEND URL: the outbox against a local receiver that answers 200 at once.
# First a backlog: a burst of creates with no worker running, then a server with its worker,
# timed until the receiver has every delivery. Then the same burst with the worker
# delivering meanwhile, and how long after the burst the backlog is empty.
webhook_lines() {
    local backend=$1 url=$2 port backlog count first last started ended total
    port=$(free_port)
    "$tools/webhook_receiver" "127.0.0.1:$port" >/dev/null 2>&1 &
    others+=($!)
    for _ in $(seq 100); do received "$port" >/dev/null 2>&1 && break; sleep 0.1; done
    stop_server
    start_server "$url" COBRO_WEBHOOK_WORKER=false COBRO_WEBHOOK_ALLOW_PRIVATE=true
    local hook
    hook=$(api POST /webhooks/ -d "{\"url\": \"http://127.0.0.1:$port/hook\", \"events\": [\"payment.created\"]}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    local post=(BENCH_METHOD=POST BENCH_TOKEN="$token" BENCH_WORKSPACE="$workspace" BENCH_BODY="$body")
    measure "$backend" "POST /payments/ (a webhook, no worker: the burst)" /payments/ "${post[@]}"
    stop_server
    backlog=$(sql "$backend" "$url" "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
    started=$(date +%s%3N)
    start_server "$url" COBRO_WEBHOOK_ALLOW_PRIVATE=true
    wait_received "$port" "$backlog"
    read -r count first last < <(received "$port")
    add_row "$backend" "webhook delivery: a backlog of the burst" "$(python3 -c "
import json
n, first, last, started = $count, $first, $last, $started
print(json.dumps({'requests': n, 'seconds': (last - started) / 1000, 'rps': n / max(last - first, 1) * 1000,
                  'backlog': $backlog, 'drain_s': (last - started) / 1000}))")"
    measure "$backend" "POST /payments/ (a webhook, worker delivering)" /payments/ "${post[@]}"
    ended=$(date +%s%3N)
    sleep 1 # the last creates' commits
    total=$(sql "$backend" "$url" "SELECT count(*) FROM webhook_deliveries")
    wait_received "$port" "$total"
    read -r count first last < <(received "$port")
    add_row "$backend" "webhook delivery while creating" "$(python3 -c "
import json
n, backlog, last, ended, seconds = $count, $backlog, $last, $ended, $duration
print(json.dumps({'requests': n - backlog, 'seconds': seconds + max(last - ended, 0) / 1000,
                  'rps': (n - backlog) / (seconds + max(last - ended, 0) / 1000),
                  'lag_s': max(last - ended, 0) / 1000}))")"
    api DELETE "/webhooks/$hook/" -o /dev/null
    kill "${others[-1]}" 2>/dev/null || true
    wait "${others[-1]}" 2>/dev/null || true
    unset 'others[-1]'
}

# two_servers URL: POST /payments/ on two `cobro serve` processes on one PostgreSQL database,
# half the connections each; checks that every acknowledged create was written.
two_servers() {
    local url=$1 port second before after
    port=$(free_port)
    second="http://127.0.0.1:$port"
    serve "$url" "$port" $((concurrency / 2)) /dev/null "$work/second.log"
    others+=($!)
    wait_healthy "$second"
    before=$(sql postgresql "$url" "SELECT count(*) FROM payments WHERE workspace_id = '$workspace'")
    local post=(BENCH_METHOD=POST BENCH_TOKEN="$token" BENCH_WORKSPACE="$workspace" BENCH_BODY="$body")
    wrk_line "$base" $((concurrency / 2)) /payments/ "${post[@]}" >"$work/first.line" &
    local first_wrk=$!
    wrk_line "$second" $((concurrency / 2)) /payments/ "${post[@]}" >"$work/second.line"
    wait "$first_wrk"
    sleep 1
    after=$(sql postgresql "$url" "SELECT count(*) FROM payments WHERE workspace_id = '$workspace'")
    add_row postgresql "POST /payments/ (two servers, one database)" "$(python3 - "$work/first.line" "$work/second.line" "$before" "$after" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
before, after = map(int, sys.argv[3:5])
answered = a["requests"] + b["requests"]
print(json.dumps({"requests": answered, "seconds": max(a["seconds"], b["seconds"]),
                  "rps": a["rps"] + b["rps"], "p50_ms": max(a["p50_ms"], b["p50_ms"]),
                  "p99_ms": max(a["p99_ms"], b["p99_ms"]), "non_2xx": a["non_2xx"] + b["non_2xx"],
                  "socket_errors": a["socket_errors"] + b["socket_errors"],
                  "rows_written": after - before,
                  "nothing_lost": after - before >= answered - a["non_2xx"] - b["non_2xx"]}))
EOF
)"
    kill "${others[-1]}" 2>/dev/null || true
    wait "${others[-1]}" 2>/dev/null || true
    unset 'others[-1]'
}

run_backend() {
    local backend=$1 url
    if [[ $backend == sqlite ]]; then
        url=$work/bench.db
    else
        pg_bin=$(find_pg_bin) || { echo "error: PostgreSQL is not installed" >&2; exit 1; }
        # Durable: an acknowledged commit is on disk.
        start_cluster "-c fsync=on -c synchronous_commit=on -c full_page_writes=on -c shared_buffers=256MB"
        trap cleanup EXIT # start_cluster set its own
        url=$pg_url
    fi
    echo
    echo "== $backend (concurrency $concurrency, ${duration} s each)"
    start_server "$url"
    measure "$backend" "GET /health/ (HTTP ceiling)" /health/
    local size ws min max
    for size in $sizes; do
        read -r ws min max < <(seed "$backend" "$url" "bench $size" "$size")
        local auth=(BENCH_TOKEN="$token" BENCH_WORKSPACE="$ws")
        measure "$backend" "GET /payments/{id}/ ($size)" "/payments/{id}/" \
            "${auth[@]}" BENCH_ID_MIN="$min" BENCH_ID_MAX="$max"
        measure "$backend" "GET /payments/?page_size=20 ($size)" "/payments/?page_size=20" "${auth[@]}"
        measure "$backend" "GET …&status=succeeded ($size)" \
            "/payments/?page_size=20&status=succeeded" "${auth[@]}"
    done
    local body='{"amount": "1000", "currency": "CLP", "date": "2026-11-23", "description": "bench"}'
    measure "$backend" "POST /payments/" /payments/ BENCH_METHOD=POST \
        BENCH_TOKEN="$token" BENCH_WORKSPACE="$workspace" BENCH_BODY="$body"
    # Each database's ceiling right after the line it bounds: the disk's fsync time drifts
    # from minute to minute, and both should see the same.
    if [[ $backend == sqlite ]]; then
        sqlite_ceiling "$url"
    else
        pgbench_ceiling "$url"
    fi
    authorize_line "$backend" "$url"
    # The cost of metrics: POST and GET by id with metrics off, then on (recorded on every
    # request, scraped every second as a busy Prometheus would), three rounds on a server
    # started afresh each time, so that the machine's drift falls on both sides alike.
    local round metrics scraping full=$duration duration=${BENCH_METRICS_DURATION:-4}
    for round in 1 2 3; do
        for metrics in off on; do
            stop_server
            if [[ $metrics == on ]]; then
                start_server "$url" COBRO_METRICS_TOKEN=bench-metrics
                (while true; do curl -sf -H 'Authorization: Bearer bench-metrics' "$base/metrics" >/dev/null || true; sleep 1; done) &
                scraping=$!
            else
                start_server "$url"
            fi
            measure "$backend" "POST /payments/ (metrics $metrics, round $round)" /payments/ \
                BENCH_METHOD=POST BENCH_TOKEN="$token" BENCH_WORKSPACE="$workspace" BENCH_BODY="$body"
            measure "$backend" "GET /payments/{id}/ ($size, metrics $metrics, round $round)" "/payments/{id}/" \
                "${auth[@]}" BENCH_ID_MIN="$min" BENCH_ID_MAX="$max"
            if [[ $metrics == on ]]; then
                kill "$scraping" 2>/dev/null || true
                wait "$scraping" 2>/dev/null || true
            fi
        done
    done
    duration=$full # the lines below run as long as the others
    # The same while 16 charges wait 3 s each at a provider (started 2 s ahead).
    slow_charges $((duration + 4)) >"$work/slow.out" &
    local slow=$!
    sleep 2
    measure "$backend" "POST /payments/ (16 charges at a 3 s provider)" /payments/ \
        BENCH_METHOD=POST BENCH_TOKEN="$token" BENCH_WORKSPACE="$workspace" BENCH_BODY="$body"
    wait "$slow" 2>/dev/null || true
    echo "  (slow charges answered meanwhile: $(grep -c answered "$work/slow.out" || true))"
    echo "  server RSS at the end: $(rss_mb) MB (peak $(peak_rss_mb) MB)"
    echo "{\"backend\": \"$backend\", \"name\": \"server RSS at the end\", \"rss_mb\": $(rss_mb), \"peak_rss_mb\": $(peak_rss_mb)}" >>"$rows"
    webhook_lines "$backend" "$url"
    if [[ $backend == postgresql ]]; then
        two_servers "$url"
    fi
    stop_server
    if [[ $backend == postgresql ]]; then
        stop_cluster
        pg_dir=""
    fi
}

for backend in $backends; do
    run_backend "$backend"
done

python3 - "$rows" "$out/results.json" "$concurrency" "$duration" "$sizes" <<'EOF'
import json, sys, platform, os
rows_path, out, concurrency, duration = sys.argv[1:5]
rows = [json.loads(line) for line in open(rows_path)]
def find(backend, prefix):
    return next((r for r in rows if r["backend"] == backend and r["name"].startswith(prefix)), None)
post, ceiling = find("postgresql", "POST /payments/"), find("postgresql", "pgbench")
summary = {}
if post and ceiling:
    summary["postgresql_post_to_pgbench"] = round(post["rps"] / ceiling["rps"], 3)
for backend in ("sqlite", "postgresql"):
    alone = next((r for r in rows if r["backend"] == backend and r["name"] == "POST /payments/"), None)
    slowed = find(backend, "POST /payments/ (16 charges")
    if alone and slowed:
        summary[f"{backend}_post_with_slow_provider_to_post"] = round(slowed["rps"] / alone["rps"], 3)
        summary[f"{backend}_post_p99_with_slow_provider_ms"] = slowed["p99_ms"]
    # Metrics on ÷ off: the median of the rounds' ratios, each round's pair back to back.
    for line, prefix in (("post", "POST /payments/ (metrics"), ("get", "GET /payments/{id}/")):
        ratios = []
        for n in (1, 2, 3):
            pair = {r["name"].split("metrics ")[1].split(",")[0]: r["rps"] for r in rows
                    if r["backend"] == backend and r["name"].startswith(prefix) and r["name"].endswith(f"round {n})")}
            if "on" in pair and "off" in pair:
                ratios.append(pair["on"] / pair["off"])
        if ratios:
            summary[f"{backend}_{line}_metrics_on_to_off_median"] = round(sorted(ratios)[len(ratios) // 2], 3)
            summary[f"{backend}_{line}_metrics_on_to_off_rounds"] = [round(r, 3) for r in ratios]
    small = find(backend, "GET /payments/?page_size=20 (10000)")
    large = find(backend, "GET /payments/?page_size=20 (1000000)")
    if small and large:
        summary[f"{backend}_page_1m_to_10k_p50"] = round(large["p50_ms"] / small["p50_ms"], 3)

# The targets (issue 17), each a ratio of two lines of this run: (name, value, goal, at least?).
def rps(backend, name):
    row = next((r for r in rows if r["backend"] == backend and r["name"] == name), None)
    return row["rps"] if row else None
targets = []
def target(name, value, goal, at_least=True):
    if value is not None:
        targets.append({"target": name, "value": round(value, 3), "goal": goal,
                        "at_least": at_least, "met": value >= goal if at_least else value <= goal})
def ratio(a, b):
    return a / b if a is not None and b else None
largest = max((int(size) for size in sys.argv[5].split()), default=0)
for backend in ("sqlite", "postgresql"):
    health = rps(backend, "GET /health/ (HTTP ceiling)")
    post = rps(backend, "POST /payments/")
    if health is None:
        continue
    if backend == "sqlite":
        target("sqlite POST / SQLite ceiling", ratio(post, rps("sqlite", "SQLite: the rows of a create (ceiling)")), 0.70)
        target("sqlite POST / health", ratio(post, health), 0.30)
    else:
        pg = find("postgresql", "pgbench")
        target("postgresql POST / pgbench pair", ratio(post, pg and pg["rps"]), 0.90)
        alone = next((r for r in rows if r["backend"] == backend and r["name"] == "POST /payments/"), None)
        if pg and alone:
            target("postgresql POST p99 / pgbench p99", alone["p99_ms"] / pg["p99_ms"], 1.0, at_least=False)
    target(f"{backend} GET by id ({largest}) / health", ratio(rps(backend, f"GET /payments/{{id}}/ ({largest})"), health), 0.80)
    for label, name in (("page of 20", "GET /payments/?page_size=20"), ("page by status", "GET …&status=succeeded")):
        target(f"{backend} {label} ({largest}) / health", ratio(rps(backend, f"{name} ({largest})"), health), 0.40)
        target(f"{backend} {label}: 10000 / {largest}", ratio(rps(backend, f"{name} (10000)"), rps(backend, f"{name} ({largest})")), 1.2, at_least=False)
    target(f"{backend} authorize / POST", ratio(rps(backend, "POST /payments/{id}/authorize/ (sandbox)"), post), 0.50)
    target(f"{backend} webhook delivery / POST", ratio(rps(backend, "webhook delivery: a backlog of the burst"), rps(backend, "POST /payments/ (a webhook, no worker: the burst)")), 1.0)
    peaks = [r["peak_rss_mb"] for r in rows if r["backend"] == backend and r.get("peak_rss_mb") is not None]
    if peaks:
        target(f"{backend} server peak RSS, MB ({largest} payments)", max(peaks), 100, at_least=False)
    two = next((r for r in rows if r["backend"] == backend and r["name"].startswith("POST /payments/ (two servers")), None)
    if two:
        summary["postgresql_two_servers_to_one"] = round(two["rps"] / post, 3)
        summary["postgresql_two_servers_nothing_lost"] = two["nothing_lost"] and not two["non_2xx"] and not two["socket_errors"]

result = {"concurrency": int(concurrency), "duration_s": int(duration), "cpus": os.cpu_count(),
          "machine": platform.machine(), "rows": rows, "summary": summary, "targets": targets}
json.dump(result, open(out, "w"), indent=2)
print()
for key, value in summary.items():
    print(f"{key}: {value}")
print()
print(f"{'target':<48} {'value':>8} {'goal':>8}")
for t in targets:
    sign = ">=" if t["at_least"] else "<="
    print(f"{t['target']:<48} {t['value']:>8} {sign} {t['goal']:<6} {'met' if t['met'] else 'NOT met'}")
print(f"written to {out}")
EOF
