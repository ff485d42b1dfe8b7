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
# BENCH_PERF=POST            profile the lines whose name contains this with `perf record -a -g`
#                            (the whole machine: cobro, PostgreSQL and wrk); the data goes to
#                            target/bench/perf/ and the CPU split per program is printed
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

echo "building the release binary"
cargo build --release --quiet
bin=$PWD/target/release/cobro
out=target/bench
mkdir -p "$out"
work=$(mktemp -d /tmp/cobro-bench.XXXXXX)
rows=$work/rows.jsonl
: >"$rows"

# shellcheck source=scripts/pg-cluster.sh
source scripts/pg-cluster.sh

server_pid=""
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    stop_cluster
    chmod -R a+rwX "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The server's peak resident memory so far (VmHWM), in MB.
peak_rss_mb() {
    awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"
}

rss_mb() {
    awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"
}

# start_server URL: a fresh `cobro serve` on URL; sets base, token, workspace.
# start_server URL [VAR=value…]: cobro serve on URL, with more environment if given. The
# first start on a database reads the bootstrap's token; a restart keeps it.
start_server() {
    local url=$1 port new_token
    shift
    port=$(free_port)
    base="http://127.0.0.1:$port"
    # The benchmark sends as fast as it can: no rate limit.
    env DATABASE_URL="$url" COBRO_RATE_LIMIT=0 RUST_LOG=warn "$@" \
        "$bin" serve --bind "127.0.0.1:$port" >"$work/serve.out" 2>"$work/serve.log" &
    server_pid=$!
    for _ in $(seq 200); do
        curl -sf "$base/health/" >/dev/null 2>&1 && break
        sleep 0.1
    done
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

# measure BACKEND NAME PATH [wrk.lua environment…]: one wrk run; appends a row.
measure() {
    local backend=$1 name=$2 path=$3
    shift 3
    local line perf_pid="" perf_data=""
    if [[ -n ${BENCH_PERF:-} && $name == *"$BENCH_PERF"* ]]; then
        mkdir -p "$out/perf"
        perf_data="$out/perf/$backend-$(tr -c 'a-zA-Z0-9\n' - <<<"$name" | tr -s -).data"
        perf record -a -g -F 499 -o "$perf_data" -- sleep "$duration" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    line=$(env BENCH_PATH="$path" "$@" wrk -t"$threads" -c"$concurrency" -d"${duration}s" \
        --timeout 10s -s scripts/bench/wrk.lua "$base" | grep '^BENCH ' | cut -c7-)
    python3 - "$backend" "$name" "$(peak_rss_mb)" "$line" >>"$rows" <<'EOF'
import json, sys
backend, name, rss, line = sys.argv[1:]
row = {"backend": backend, "name": name, **json.loads(line), "peak_rss_mb": float(rss)}
if row["non_2xx"] or row["socket_errors"]:
    print(f"warning: {backend} {name}: {row['non_2xx']} non-2xx answers, {row['socket_errors']} socket errors", file=sys.stderr)
print(json.dumps(row))
print(f"  {name:<44} {row['rps']:>9.0f} req/s  p50 {row['p50_ms']:>7.2f} ms  p99 {row['p99_ms']:>7.2f} ms  peak RSS {row['peak_rss_mb']:>6.1f} MB", file=sys.stderr)
EOF
    if [[ -n $perf_pid ]]; then
        wait "$perf_pid" || true
        echo "    CPU by program ($perf_data; perf report -i … for the call graphs):"
        perf report -i "$perf_data" --no-children --sort comm -g none 2>/dev/null |
            awk '/^ +[0-9.]+%/ && n++ < 6 { print "     " $0 }'
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

# seed BACKEND URL NAME COUNT: a workspace (owned by the bootstrap user) holding COUNT
# payments, written by SQL, and their counts (payment_counts); prints "workspace min_id
# max_id".
seed() {
    local backend=$1 url=$2 name=$3 count=$4 ws
    ws=$(DATABASE_URL=$url "$bin" workspace create --owner admin@cobro.local "$name" --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    # 60 % succeeded, 20 % awaiting payment, 20 % cancelled; one a second from 2026-01-01.
    local columns="workspace_id, test_mode, amount, collected, currency, unit, date, description,
        sources, status, enable_checkout, metadata, checkout_key, version, created, updated"
    if [[ $backend == sqlite ]]; then
        sqlite3 "$url" >/dev/null <<EOF
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count)
INSERT INTO payments ($columns)
SELECT '$ws', 0, 1000 + (i % 997) * 100,
       CASE WHEN i % 5 < 3 THEN 1000 + (i % 997) * 100 ELSE 0 END,
       'CLP', 1, date('2026-01-01', '+' || (i % 300) || ' days'), 'seeded payment ' || i, '[]',
       CASE WHEN i % 5 < 3 THEN 'succeeded' WHEN i % 5 = 3 THEN 'requires_payment_method' ELSE 'cancelled' END,
       0, '{}', 'seed_${ws}_' || i, 1,
       strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || i || ' seconds'),
       strftime('%Y-%m-%d %H:%M:%f', '2026-01-01', '+' || i || ' seconds')
FROM n;
ANALYZE;
EOF
        echo "$ws $(sqlite3 "$url" "SELECT min(id) || ' ' || max(id) FROM payments WHERE workspace_id = '$ws'")"
    else
        # A bulk load: the row triggers that keep payment_counts are off for this session
        # (a million updates of the same few count rows in one transaction is slow on
        # PostgreSQL), and the counts are written once at the end.
        "$pg_psql" -X -q -v ON_ERROR_STOP=1 "$url" <<EOF
SET session_replication_role = replica;
INSERT INTO payments ($columns)
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

# pgbench_ceiling URL WORKSPACE: the INSERT pair of a create, alone; appends a row.
pgbench_ceiling() {
    local url=$1 ws=$2 payment event
    # A payment and its event as cobro writes them (the event's data is the payment's JSON).
    payment=$(curl -sf -X POST "$base/payments/" -H "Authorization: Token $token" \
        -H "x-simple-workspace: $ws" -H 'Content-Type: application/json' \
        -d '{"amount": "1000", "currency": "CLP", "date": "2026-11-23", "description": "bench"}')
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
    # The cost of metrics: POST and GET by id with metrics off, then on (recorded on every
    # request, scraped every second as a busy Prometheus would), three rounds on a server
    # started afresh each time, so that the machine's drift falls on both sides alike.
    local round metrics scraping duration=${BENCH_METRICS_DURATION:-4}
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
    if [[ $backend == postgresql ]]; then
        pgbench_ceiling "$url" "$workspace"
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

python3 - "$rows" "$out/results.json" "$concurrency" "$duration" <<'EOF'
import json, sys, platform, os
rows_path, out, concurrency, duration = sys.argv[1:]
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
result = {"concurrency": int(concurrency), "duration_s": int(duration), "cpus": os.cpu_count(),
          "machine": platform.machine(), "rows": rows, "summary": summary}
json.dump(result, open(out, "w"), indent=2)
print()
for key, value in summary.items():
    print(f"{key}: {value}")
print(f"written to {out}")
EOF
