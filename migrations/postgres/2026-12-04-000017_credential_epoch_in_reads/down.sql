DROP FUNCTION cobro_epoch_holds(BIGINT);
