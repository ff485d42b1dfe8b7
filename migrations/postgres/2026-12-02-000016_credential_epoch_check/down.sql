DROP FUNCTION cobro_epoch_is(BIGINT);
