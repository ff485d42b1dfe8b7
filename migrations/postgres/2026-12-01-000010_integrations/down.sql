ALTER TABLE payment_attempts DROP COLUMN integration_id;
ALTER TABLE sources DROP COLUMN integration_id;
DROP TABLE integrations;
