DROP TRIGGER payment_counts_insert_delete ON payments;
DROP TRIGGER payment_counts_update ON payments;
DROP FUNCTION payment_counts_follow();
