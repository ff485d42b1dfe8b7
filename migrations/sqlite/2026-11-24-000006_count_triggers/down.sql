DROP TRIGGER payment_counts_insert;
DROP TRIGGER payment_counts_update;
DROP TRIGGER payment_counts_delete;
