-- A write let in on a cached credential checks, in the same round trip as its BEGIN
-- (`BEGIN; SELECT cobro_epoch_is(n)`), that no credential changed since it was cached
-- (`accounts::cache`), which tells this refusal from a failure by its message (diesel does
-- not give the error code).
CREATE FUNCTION cobro_epoch_is(expected BIGINT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT n FROM credential_epoch WHERE id = 1) IS DISTINCT FROM expected THEN
        RAISE EXCEPTION 'the credential epoch moved' USING ERRCODE = 'CB001';
    END IF;
END
$$;
