DROP TABLE payment_attempts;
DROP TABLE sources;
