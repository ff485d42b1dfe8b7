-- A change's count goes to the slot of the connection that makes it (its backend's pid, one
-- of 64) instead of one picked at random among 8. A transaction holds the count rows it
-- changed until it commits, so with random slots concurrent writes in one workspace queued
-- on the same few rows (and two status changes could take them in opposite orders): 32
-- sessions authorizing charges managed 6 a second. Now two sessions meet on a row only
-- when their pids share a slot.
CREATE OR REPLACE FUNCTION payment_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    own_slot int := pg_backend_pid() % 64;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
        VALUES (OLD.workspace_id, OLD.test_mode, OLD.status, OLD.currency, own_slot, -1)
        ON CONFLICT (workspace_id, test_mode, status, currency, slot)
        DO UPDATE SET n = payment_counts.n - 1;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
        VALUES (NEW.workspace_id, NEW.test_mode, NEW.status, NEW.currency, own_slot, 1)
        ON CONFLICT (workspace_id, test_mode, status, currency, slot)
        DO UPDATE SET n = payment_counts.n + 1;
    END IF;
    RETURN NULL;
END
$$;
