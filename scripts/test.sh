#!/usr/bin/env bash
# The project's test command: runs every test against SQLite and, when PostgreSQL is
# available, against a throwaway PostgreSQL cluster too.
#
#   ./scripts/test.sh                 # all tests
#   ./scripts/test.sh --test cli      # extra arguments go to `cargo test`
#
# TEST_DATABASE_URL=postgres://…      use that server instead of starting a cluster
# REQUIRE_POSTGRES=1                  fail instead of skipping the PostgreSQL tests
# RUN_FUZZ=1                          then fuzz the API with schemathesis (scripts/fuzz.sh)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The directory holding initdb, pg_ctl and postgres: from PATH, or the newest Debian install.
find_pg_bin() {
    local initdb dir
    if initdb=$(command -v initdb) && command -v pg_ctl >/dev/null; then
        dir=$(dirname "$(readlink -f "$initdb")")
        if [[ -x $dir/pg_ctl && -x $dir/postgres ]]; then
            echo "$dir"
            return 0
        fi
    fi
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
        echo "$dir"
        return 0
    fi
    return 1
}

# Is something already listening on 127.0.0.1:$1?
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pg_dir=""
pg_bin=""
pg_user=""  # initdb refuses to run as root: then the cluster belongs to the postgres user

# Runs a PostgreSQL program as the cluster's owner.
as_owner() {
    if [[ -n $pg_user ]]; then
        runuser -u "$pg_user" -- "$@"
    else
        "$@"
    fi
}

stop_cluster() {
    if [[ -n $pg_dir ]]; then
        if [[ -f $pg_dir/data/postmaster.pid ]]; then
            as_owner "$pg_bin/pg_ctl" stop -D "$pg_dir/data" -m fast >/dev/null 2>&1 || true
        fi
        rm -rf "$pg_dir"
    fi
}

start_cluster() {
    # /tmp rather than $TMPDIR: the postgres user must reach it, and the socket path
    # must stay short.
    pg_dir=$(mktemp -d /tmp/cobro-pg.XXXXXX)
    trap stop_cluster EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if [[ $(id -u) == 0 ]]; then
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
        fi
        chown postgres: "$pg_dir"
        pg_user=postgres
    fi

    as_owner "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust \
        --encoding=UTF8 --no-sync >"$pg_dir/initdb.log" 2>&1 || {
        cat "$pg_dir/initdb.log" >&2
        echo "error: initdb failed" >&2
        return 1
    }

    local port started=""
    for port in $(seq 54330 54399); do
        port_in_use "$port" && continue
        if as_owner "$pg_bin/pg_ctl" start -w -D "$pg_dir/data" -l "$pg_dir/postgres.log" \
            -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
            >/dev/null; then
            started=$port
            break
        fi
        # Most likely another process took the port in the meantime: try the next one.
    done
    if [[ -z $started ]]; then
        tail -n 20 "$pg_dir/postgres.log" >&2 || true
        echo "error: could not start PostgreSQL on any port in 54330-54399" >&2
        return 1
    fi

    local psql="$pg_bin/psql"
    [[ -x $psql ]] || psql=psql
    "$psql" -X -q -h 127.0.0.1 -p "$started" -U postgres -d postgres \
        -c "CREATE DATABASE cobro_test" >/dev/null
    export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$started/cobro_test"
    echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') started on 127.0.0.1:$started (data in $pg_dir)"
}

if [[ -n ${TEST_DATABASE_URL:-} ]]; then
    echo "Using TEST_DATABASE_URL from the environment."
elif pg_bin=$(find_pg_bin); then
    start_cluster
elif [[ ${REQUIRE_POSTGRES:-} == 1 ]]; then
    echo "error: REQUIRE_POSTGRES=1 but no PostgreSQL was found (initdb, pg_ctl and postgres on PATH or in /usr/lib/postgresql/*/bin); install it (apt-get install postgresql) or set TEST_DATABASE_URL" >&2
    exit 1
else
    echo "PostgreSQL not found: the PostgreSQL tests will be skipped (install PostgreSQL or set TEST_DATABASE_URL to run them)."
fi

if [[ -n ${TEST_DATABASE_URL:-} ]]; then
    # Never print a password.
    echo "Testing backends: sqlite, postgresql ($(sed -E 's#(://[^:@/]*):[^@/]*@#\1:***@#' <<<"$TEST_DATABASE_URL"))"
else
    echo "Testing backends: sqlite"
fi

# Every target by default; `--test cli` and the like pick their own (cargo would otherwise
# run the union of both selections).
all_targets=--all-targets
for arg in "$@"; do
    case $arg in
    --) break ;;
    --lib | --bins | --bin | --bin=* | --tests | --test | --test=* | --examples | --example | \
        --example=* | --benches | --bench | --bench=* | --all-targets | --doc)
        all_targets=""
        break
        ;;
    esac
done

status=0
cargo test ${all_targets:+"$all_targets"} "$@" || status=$?
if [[ $status == 0 && ${RUN_FUZZ:-} == 1 ]]; then
    ./scripts/fuzz.sh || status=$?
fi
exit "$status"
