-- Money that went back to the payer: what a payment's (and its invoice's) succeeded refunds
-- add up to, kept beside the amount collected, in minor units.
ALTER TABLE payments ADD COLUMN amount_refunded BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invoices ADD COLUMN amount_refunded BIGINT NOT NULL DEFAULT 0;

-- A refund of (part of) what a payment collected.
CREATE TABLE refunds (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    payment_id BIGINT NOT NULL REFERENCES payments (id),
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    -- Minor units per unit of the currency, for ordering by amount across currencies.
    unit BIGINT NOT NULL,
    reason TEXT,
    status TEXT NOT NULL,
    failed_reason TEXT,
    metadata TEXT NOT NULL,
    version BIGINT NOT NULL,
    created TIMESTAMP NOT NULL,
    updated TIMESTAMP NOT NULL
);
CREATE INDEX refunds_scope_created ON refunds (workspace_id, test_mode, created DESC, id DESC);
CREATE INDEX refunds_payment ON refunds (workspace_id, test_mode, payment_id);

-- What a refund sends back through one charge (an attempt), newest charges first, each at
-- most what that charge collected; or, with no attempt, money the merchant recorded by hand,
-- returned outside cobro. Each is one call to its gateway, keyed by `call_key`.
CREATE TABLE refund_parts (
    id BIGSERIAL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    refund_id BIGINT NOT NULL REFERENCES refunds (id),
    payment_id BIGINT NOT NULL REFERENCES payments (id),
    attempt_id BIGINT REFERENCES payment_attempts (id),
    gateway TEXT,
    integration_id TEXT,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_code TEXT,
    gateway_reference TEXT,
    call_key TEXT NOT NULL,
    -- What the call carries besides the amount, so that sent again it is the same call.
    description TEXT NOT NULL,
    -- The reconciler: its claim, when it last asked, and whether a provider's event asked it
    -- to look now.
    claimed_until TIMESTAMP,
    asked TIMESTAMP,
    ask_now BOOLEAN NOT NULL DEFAULT FALSE,
    created TIMESTAMP NOT NULL,
    updated TIMESTAMP NOT NULL
);
CREATE INDEX refund_parts_refund ON refund_parts (workspace_id, test_mode, refund_id, id);
CREATE INDEX refund_parts_payment ON refund_parts (workspace_id, test_mode, payment_id);
CREATE INDEX refund_parts_reference ON refund_parts (workspace_id, test_mode, gateway_reference);
CREATE UNIQUE INDEX refund_parts_call_key ON refund_parts (call_key);
-- The reconciler and the sandbox's loop look for refunds in flight, across workspaces.
CREATE INDEX refund_parts_in_flight ON refund_parts (status, updated);

-- What a staged request's work made (a refund's path), for a retry whose answer was lost:
-- it is never run again, and the retry is told where to look.
ALTER TABLE idempotency_keys ADD COLUMN started_object TEXT;
