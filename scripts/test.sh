#!/usr/bin/env bash
# The project's test command: runs every test against SQLite and, when PostgreSQL is
# available, against a throwaway PostgreSQL cluster too.
#
#   ./scripts/test.sh                 # all tests
#   ./scripts/test.sh --test cli      # extra arguments go to `cargo test`
#
# TEST_DATABASE_URL=postgres://…      use that server instead of starting a cluster
# REQUIRE_POSTGRES=1                  fail instead of skipping the PostgreSQL tests
# TEST_STRIPE_URL=http://…            use that localstripe instead of starting one
# REQUIRE_STRIPE=1                    fail instead of skipping the Stripe tests (localstripe
#                                     is installed from PyPI into target/ when missing)
# RUN_FUZZ=1                          then fuzz the API with schemathesis (scripts/fuzz.sh)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# find_pg_bin, start_cluster, stop_cluster
source scripts/pg-cluster.sh
# install_localstripe, start_localstripe, stop_localstripe
source scripts/localstripe.sh

if [[ -n ${TEST_DATABASE_URL:-} ]]; then
    echo "Using TEST_DATABASE_URL from the environment."
elif pg_bin=$(find_pg_bin); then
    # The tests need no durability: fsync off.
    start_cluster "-c fsync=off"
    export TEST_DATABASE_URL="$pg_url"
elif [[ ${REQUIRE_POSTGRES:-} == 1 ]]; then
    echo "error: REQUIRE_POSTGRES=1 but no PostgreSQL was found (initdb, pg_ctl and postgres on PATH or in /usr/lib/postgresql/*/bin); install it (apt-get install postgresql) or set TEST_DATABASE_URL" >&2
    exit 1
else
    echo "PostgreSQL not found: the PostgreSQL tests will be skipped (install PostgreSQL or set TEST_DATABASE_URL to run them)."
fi

if [[ -n ${TEST_STRIPE_URL:-} ]]; then
    echo "Using TEST_STRIPE_URL from the environment."
elif install_localstripe && start_localstripe; then
    export TEST_STRIPE_URL="$stripe_url"
elif [[ ${REQUIRE_STRIPE:-} == 1 ]]; then
    echo "error: REQUIRE_STRIPE=1 but localstripe could not be installed or started (it needs python3 with venv and PyPI)" >&2
    exit 1
else
    echo "localstripe not available: the Stripe tests will be skipped."
fi

# Both stop with the script, however it ends.
trap 'stop_localstripe; stop_cluster' EXIT

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
