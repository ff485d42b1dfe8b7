DROP INDEX payment_attempts_reference;
ALTER TABLE payment_attempts DROP COLUMN call_key;
ALTER TABLE payment_attempts DROP COLUMN asked;
ALTER TABLE payment_attempts DROP COLUMN claimed_until;
DROP TABLE provider_events;
