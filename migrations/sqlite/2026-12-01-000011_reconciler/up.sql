-- Events a provider sent to an integration's webhook, by the provider's event id: each is
-- applied once, however often it is sent.
CREATE TABLE provider_events (
    integration_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    test_mode BOOLEAN NOT NULL,
    event_type TEXT NOT NULL,
    received TIMESTAMP NOT NULL,
    PRIMARY KEY (integration_id, event_id)
);

-- The reconciler's claim on an attempt in flight (so that two workers never ask about one
-- attempt at once), and when the provider was last asked about it.
ALTER TABLE payment_attempts ADD COLUMN claimed_until TIMESTAMP;
ALTER TABLE payment_attempts ADD COLUMN asked TIMESTAMP;
-- An attempt's own random key, unique across every database: the provider's idempotency
-- key and the attempt's mark in the provider's metadata (ids repeat between databases
-- sharing one provider account).
ALTER TABLE payment_attempts ADD COLUMN call_key TEXT;
-- What was asked of the provider, so that a call sent again is the same call: whether the
-- charge was to be captured at once, and the description it carried. And the call about the
-- attempt that is on its way (charge, capture, release, abandon) with a capture's amount,
-- so that an older state arriving late never undoes it.
ALTER TABLE payment_attempts ADD COLUMN capture BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE payment_attempts ADD COLUMN description TEXT;
ALTER TABLE payment_attempts ADD COLUMN operation TEXT;
ALTER TABLE payment_attempts ADD COLUMN operation_amount BIGINT;
-- When the work of a staged request (one that calls a provider) began: from then on the key
-- is never taken over, for that work may have moved money.
ALTER TABLE idempotency_keys ADD COLUMN started_at TIMESTAMP;
-- The reconciler looks for provider attempts in flight; a provider's webhook finds its
-- attempt by the provider's reference.
CREATE INDEX payment_attempts_reference ON payment_attempts (workspace_id, test_mode, gateway_reference);
