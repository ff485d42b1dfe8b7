#!/usr/bin/env bash
# The crash test, with its report visible: `cobro serve` is killed with SIGKILL at random
# moments (5 times, after 200-1500 ms of serving each) while client threads create payments
# as fast as it answers, and restarted on the same database each time. Afterwards every
# payment whose create was answered 201 must be there, unchanged field for field, and
# every stored payment must have its payment.created event. It runs on a SQLite file
# (default settings) and on a throwaway PostgreSQL (through scripts/test.sh), and prints
# one line per backend (wrapped here), e.g.
#
#   crash test (sqlite): 1016 acknowledged, 1016 found, 5 kills; 1022 stored in all (6 committed
#   without an answer reaching the client); no answer (server down or killed mid-request): …
#
# Requests that got no answer (connection refused or reset while the server was down) are
# counted apart, by kind: they were not acknowledged, so they promise nothing.
#
#   ./scripts/crash-test.sh                     # both backends (PostgreSQL when installed)
#   REQUIRE_POSTGRES=1 ./scripts/crash-test.sh  # fail rather than skip without PostgreSQL
#   ./scripts/crash-test.sh --exact crash_keeps_every_acknowledged_create::sqlite
#                                               # extra arguments go to the test binary
#
# The test is tests/resilience.rs (crash_keeps_every_acknowledged_create), which also runs
# with the rest of the suite, silently.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec ./scripts/test.sh --test resilience crash -- --nocapture "$@"
