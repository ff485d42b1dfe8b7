-- payment_counts is now kept by the database itself, in the statement that changes a
-- payment: one round trip less per write, and payments inserted, deleted, or moved to
-- another status or currency by hand are counted too. Each change adds to one of 8 slots picked at random, so that concurrent
-- writes in one workspace do not queue on one row lock.
CREATE FUNCTION payment_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
        VALUES (OLD.workspace_id, OLD.test_mode, OLD.status, OLD.currency, floor(random() * 8)::int, -1)
        ON CONFLICT (workspace_id, test_mode, status, currency, slot)
        DO UPDATE SET n = payment_counts.n - 1;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
        VALUES (NEW.workspace_id, NEW.test_mode, NEW.status, NEW.currency, floor(random() * 8)::int, 1)
        ON CONFLICT (workspace_id, test_mode, status, currency, slot)
        DO UPDATE SET n = payment_counts.n + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER payment_counts_insert_delete AFTER INSERT OR DELETE ON payments
FOR EACH ROW EXECUTE FUNCTION payment_counts_follow();

CREATE TRIGGER payment_counts_update AFTER UPDATE OF status, currency ON payments
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.currency IS DISTINCT FROM NEW.currency)
EXECUTE FUNCTION payment_counts_follow();
