# shellcheck shell=bash
# Sourced by scripts/bench.sh and scripts/ab.sh: how the benchmarks seed payments by SQL.

# The columns the seeds write (the rest keep their defaults).
payment_columns="workspace_id, test_mode, amount, collected, currency, unit, date, description,
    sources, status, enable_checkout, metadata, checkout_key, version, created, updated"

# seed_sqlite_payments DATABASE WORKSPACE COUNT: COUNT live payments in WORKSPACE, 60 %
# succeeded, 20 % awaiting payment, 20 % cancelled, one a second from 2026-01-01 (their
# counts follow by the triggers on payments).
seed_sqlite_payments() {
    local db=$1 ws=$2 count=$3
    sqlite3 "$db" >/dev/null <<EOF
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $count)
INSERT INTO payments ($payment_columns)
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
}
