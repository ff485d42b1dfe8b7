-- payment_counts is now kept by the database itself, in the statement that changes a
-- payment: one round trip less per write, and payments inserted, deleted, or moved to
-- another status or currency by hand are counted too. Each change adds to one of 8 slots
-- picked at random.
CREATE TRIGGER payment_counts_insert AFTER INSERT ON payments BEGIN
    INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
    VALUES (NEW.workspace_id, NEW.test_mode, NEW.status, NEW.currency, random() & 7, 1)
    ON CONFLICT (workspace_id, test_mode, status, currency, slot) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER payment_counts_update AFTER UPDATE OF status, currency ON payments
WHEN OLD.status IS NOT NEW.status OR OLD.currency IS NOT NEW.currency BEGIN
    INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
    VALUES (OLD.workspace_id, OLD.test_mode, OLD.status, OLD.currency, random() & 7, -1)
    ON CONFLICT (workspace_id, test_mode, status, currency, slot) DO UPDATE SET n = n - 1;
    INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
    VALUES (NEW.workspace_id, NEW.test_mode, NEW.status, NEW.currency, random() & 7, 1)
    ON CONFLICT (workspace_id, test_mode, status, currency, slot) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER payment_counts_delete AFTER DELETE ON payments BEGIN
    INSERT INTO payment_counts (workspace_id, test_mode, status, currency, slot, n)
    VALUES (OLD.workspace_id, OLD.test_mode, OLD.status, OLD.currency, random() & 7, -1)
    ON CONFLICT (workspace_id, test_mode, status, currency, slot) DO UPDATE SET n = n - 1;
END;
