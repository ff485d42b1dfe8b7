ALTER TABLE idempotency_keys DROP COLUMN started_object;
DROP TABLE refund_parts;
DROP TABLE refunds;
ALTER TABLE invoices DROP COLUMN amount_refunded;
ALTER TABLE payments DROP COLUMN amount_refunded;
