-- The payment whose checkout made a source (a payer's, made with the checkout key): such a
-- source can pay only that payment. No foreign key: the id stays after that payment is
-- deleted (ids are never reused), so the source can then pay nothing at all.
ALTER TABLE sources ADD COLUMN checkout_payment_id BIGINT;
