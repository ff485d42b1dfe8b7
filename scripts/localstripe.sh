# localstripe (a Stripe emulator from PyPI) for the tests: sourced by test.sh.
#
# start_localstripe installs it into target/localstripe-venv the first time (about 10 s,
# with python3), starts it on a free port with --from-scratch and sets stripe_url; the
# caller's EXIT trap stops it (stop_localstripe).

LOCALSTRIPE_VERSION=1.15.10
localstripe_venv=target/localstripe-venv
localstripe_pid=""
localstripe_log=""

have_localstripe() {
    [[ -x $localstripe_venv/bin/localstripe ]] &&
        "$localstripe_venv/bin/pip" show localstripe 2>/dev/null | grep -qx "Version: $LOCALSTRIPE_VERSION"
}

install_localstripe() {
    have_localstripe && return 0
    command -v python3 >/dev/null || return 1
    echo "installing localstripe $LOCALSTRIPE_VERSION into $localstripe_venv"
    python3 -m venv "$localstripe_venv" &&
        "$localstripe_venv/bin/pip" install --quiet --disable-pip-version-check \
            "localstripe==$LOCALSTRIPE_VERSION"
}

stop_localstripe() {
    if [[ -n $localstripe_pid ]]; then
        kill "$localstripe_pid" 2>/dev/null || true
        wait "$localstripe_pid" 2>/dev/null || true
        localstripe_pid=""
    fi
}

start_localstripe() {
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    localstripe_log=$(mktemp /tmp/cobro-localstripe.XXXXXX.log)
    "$localstripe_venv/bin/localstripe" --port "$port" --from-scratch >"$localstripe_log" 2>&1 &
    localstripe_pid=$!
    local tries
    for tries in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            stripe_url="http://127.0.0.1:$port"
            echo "localstripe $LOCALSTRIPE_VERSION started on 127.0.0.1:$port (log in $localstripe_log)"
            return 0
        fi
        kill -0 "$localstripe_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$localstripe_log" >&2
    echo "error: localstripe did not start" >&2
    return 1
}
