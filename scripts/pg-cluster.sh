# A throwaway PostgreSQL cluster for the scripts (sourced by test.sh and bench.sh).

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

# Starts a throwaway cluster with the server settings in $1 (e.g. "-c fsync=off") and a
# database cobro_test; sets pg_port, pg_url (to that database) and pg_psql. Needs pg_bin.
start_cluster() {
    local settings=${1:-}
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
            -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=200 $settings" \
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

    pg_psql="$pg_bin/psql"
    [[ -x $pg_psql ]] || pg_psql=psql
    "$pg_psql" -X -q -h 127.0.0.1 -p "$started" -U postgres -d postgres \
        -c "CREATE DATABASE cobro_test" >/dev/null
    pg_port=$started
    pg_url="postgres://postgres@127.0.0.1:$started/cobro_test"
    echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') started on 127.0.0.1:$started (data in $pg_dir)"
}

