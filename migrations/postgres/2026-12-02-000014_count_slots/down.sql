CREATE OR REPLACE FUNCTION payment_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
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
