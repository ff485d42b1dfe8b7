-- A read let in on a cached credential carries its check in its own statement
-- (`db::checked`: `SELECT * FROM (the read) AS checked WHERE cobro_epoch_holds(n)`), so
-- that a read is one round trip, not two. STABLE and without column references, the call
-- is a one-time filter, evaluated once before the read's rows, even when there are none;
-- it raises as `cobro_epoch_is` does when the epoch moved.
CREATE FUNCTION cobro_epoch_holds(expected BIGINT) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF (SELECT n FROM credential_epoch WHERE id = 1) IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'the credential epoch moved' USING ERRCODE = 'CB001';
    END IF;
    RETURN true;
END
$$;
