ALTER TABLE sources DROP COLUMN checkout_payment_id;
