// Kept by hand: `diesel print-schema` differs per backend, and this one file serves both.
// Tenant tables (payments, payment_metadata, events) are reached only through the
// scoped helpers in their modules' store.rs; see `crate::db::Scope`.

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        token_digest -> Nullable<Text>,
        created -> Timestamp,
        password_hash -> Nullable<Text>,
    }
}

diesel::table! {
    console_sessions (digest) {
        digest -> Text,
        user_id -> BigInt,
        workspace_id -> Nullable<Text>,
        test_mode -> Bool,
        created -> Timestamp,
        last_seen -> Timestamp,
    }
}

diesel::table! {
    sign_in_links (digest) {
        digest -> Text,
        user_id -> BigInt,
        created -> Timestamp,
        expires -> Timestamp,
        used -> Nullable<Timestamp>,
    }
}

diesel::table! {
    credential_epoch (id) {
        id -> Integer,
        n -> BigInt,
    }
}

diesel::table! {
    workspaces (id) {
        id -> Text,
        name -> Text,
        created -> Timestamp,
    }
}

diesel::table! {
    memberships (workspace_id, user_id) {
        workspace_id -> Text,
        user_id -> BigInt,
        created -> Timestamp,
        role -> Text,
    }
}

diesel::table! {
    secret_keys (id) {
        id -> BigInt,
        workspace_id -> Text,
        test_mode -> Bool,
        digest -> Text,
        prefix -> Text,
        created -> Timestamp,
        permissions -> Nullable<Text>,
        name -> Text,
        last4 -> Text,
        last_used -> Nullable<Timestamp>,
        revoked -> Nullable<Timestamp>,
    }
}

diesel::table! {
    payments (id) {
        id -> BigInt,
        workspace_id -> Text,
        test_mode -> Bool,
        amount -> BigInt,
        collected -> BigInt,
        currency -> Text,
        unit -> BigInt,
        date -> Date,
        description -> Text,
        invoice -> Nullable<Text>,
        subscription -> Nullable<Text>,
        customer -> Nullable<Text>,
        payment_date -> Nullable<Timestamp>,
        source -> Nullable<BigInt>,
        sources -> Text,
        status -> Text,
        failed_reason -> Nullable<Text>,
        return_url -> Nullable<Text>,
        enable_checkout -> Bool,
        metadata -> Text,
        checkout_key -> Text,
        version -> BigInt,
        created -> Timestamp,
        updated -> Timestamp,
        amount_refunded -> BigInt,
    }
}

diesel::table! {
    payment_metadata (payment_id, key) {
        payment_id -> BigInt,
        workspace_id -> Text,
        test_mode -> Bool,
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        workspace_id -> Text,
        test_mode -> Bool,
        event_type -> Text,
        object_type -> Text,
        object_id -> Text,
        data -> Text,
        created -> Timestamp,
        actor_type -> Text,
        actor -> Text,
        request_id -> Text,
    }
}

diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(console_sessions -> users (user_id));
diesel::joinable!(memberships -> workspaces (workspace_id));
diesel::allow_tables_to_appear_in_same_query!(memberships, users, workspaces, console_sessions);

diesel::allow_tables_to_appear_in_same_query!(payments, payment_metadata, payment_counts);

diesel::table! {
    payment_counts (workspace_id, test_mode, status, currency, slot) {
        workspace_id -> Text,
        test_mode -> Bool,
        status -> Text,
        currency -> Text,
        slot -> Integer,
        n -> BigInt,
    }
}

diesel::table! {
    customers (id) {
        id -> Text,
        workspace_id -> Text,
        test_mode -> Bool,
        name -> Text,
        email -> Nullable<Text>,
        tax_id -> Nullable<Text>,
        country -> Nullable<Text>,
        status -> Text,
        metadata -> Text,
        version -> BigInt,
        created -> Timestamp,
        updated -> Timestamp,
    }
}

diesel::table! {
    provider_events (integration_id, event_id) {
        integration_id -> Text,
        event_id -> Text,
        workspace_id -> Text,
        test_mode -> Bool,
        event_type -> Text,
        received -> Timestamp,
    }
}

diesel::table! {
    integrations (id) {
        id -> Text,
        workspace_id -> Text,
        test_mode -> Bool,
        gateway -> Text,
        name -> Text,
        enabled -> Bool,
        credentials -> Text,
        credentials_key -> Text,
        credentials_shown -> Text,
        version -> BigInt,
        created -> Timestamp,
        updated -> Timestamp,
    }
}

diesel::table! {
    invoices (id) {
        id -> Text,
        workspace_id -> Text,
        test_mode -> Bool,
        customer -> Text,
        currency -> Text,
        status -> Text,
        lines -> Text,
        total -> BigInt,
        amount_paid -> BigInt,
        due_date -> Date,
        description -> Nullable<Text>,
        metadata -> Text,
        finalized_at -> Nullable<Timestamp>,
        paid_at -> Nullable<Timestamp>,
        version -> BigInt,
        created -> Timestamp,
        updated -> Timestamp,
        amount_refunded -> BigInt,
    }
}

diesel::table! {
    sources (id) {
        id -> BigInt,
        workspace_id -> Text,
        test_mode -> Bool,
        gateway -> Text,
        usage -> Text,
        customer -> Nullable<Text>,
        amount -> Nullable<Text>,
        description -> Nullable<Text>,
        status -> Text,
        return_url -> Nullable<Text>,
        gateway_data -> Text,
        card_brand -> Nullable<Text>,
        card_last4 -> Nullable<Text>,
        card_exp_month -> Nullable<Integer>,
        card_exp_year -> Nullable<Integer>,
        metadata -> Text,
        version -> BigInt,
        created -> Timestamp,
        updated -> Timestamp,
        checkout_payment_id -> Nullable<BigInt>,
        integration_id -> Nullable<Text>,
    }
}

diesel::table! {
    payment_attempts (id) {
        id -> BigInt,
        workspace_id -> Text,
        test_mode -> Bool,
        payment_id -> BigInt,
        source_id -> BigInt,
        gateway -> Text,
        amount -> BigInt,
        currency -> Text,
        status -> Text,
        failure_code -> Nullable<Text>,
        gateway_reference -> Nullable<Text>,
        created -> Timestamp,
        updated -> Timestamp,
        integration_id -> Nullable<Text>,
        claimed_until -> Nullable<Timestamp>,
        asked -> Nullable<Timestamp>,
        call_key -> Nullable<Text>,
        capture -> Bool,
        description -> Nullable<Text>,
        operation -> Nullable<Text>,
        operation_amount -> Nullable<BigInt>,
    }
}

diesel::table! {
    idempotency_keys (workspace_id, test_mode, credential, idempotency_key) {
        workspace_id -> Text,
        test_mode -> Bool,
        credential -> Text,
        idempotency_key -> Text,
        request_path -> Text,
        fingerprint -> Text,
        lock_token -> Nullable<Text>,
        locked_at -> Nullable<Timestamp>,
        response_status -> Nullable<Integer>,
        response_body -> Nullable<Text>,
        created -> Timestamp,
        started_at -> Nullable<Timestamp>,
        started_object -> Nullable<Text>,
    }
}

diesel::table! {
    webhooks (id) {
        id -> BigInt,
        workspace_id -> Text,
        test_mode -> Bool,
        url -> Text,
        events -> Text,
        description -> Nullable<Text>,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        secret -> Text,
        failure_status -> Nullable<Integer>,
        failure_streak -> Integer,
        version -> BigInt,
        created -> Timestamp,
        updated -> Timestamp,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> BigInt,
        workspace_id -> Text,
        test_mode -> Bool,
        webhook_id -> BigInt,
        event_id -> BigInt,
        object_id -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt -> Timestamp,
        claimed_until -> Nullable<Timestamp>,
        last_status -> Nullable<Integer>,
        last_error -> Nullable<Text>,
        last_attempt -> Nullable<Timestamp>,
        created -> Timestamp,
    }
}

diesel::joinable!(webhook_deliveries -> webhooks (webhook_id));
diesel::allow_tables_to_appear_in_same_query!(webhooks, webhook_deliveries);

diesel::table! {
    refunds (id) {
        id -> BigInt,
        workspace_id -> Text,
        test_mode -> Bool,
        payment_id -> BigInt,
        amount -> BigInt,
        currency -> Text,
        unit -> BigInt,
        reason -> Nullable<Text>,
        status -> Text,
        failed_reason -> Nullable<Text>,
        metadata -> Text,
        version -> BigInt,
        created -> Timestamp,
        updated -> Timestamp,
    }
}

diesel::table! {
    refund_parts (id) {
        id -> BigInt,
        workspace_id -> Text,
        test_mode -> Bool,
        refund_id -> BigInt,
        payment_id -> BigInt,
        attempt_id -> Nullable<BigInt>,
        gateway -> Nullable<Text>,
        integration_id -> Nullable<Text>,
        amount -> BigInt,
        currency -> Text,
        status -> Text,
        failure_code -> Nullable<Text>,
        gateway_reference -> Nullable<Text>,
        call_key -> Text,
        description -> Text,
        claimed_until -> Nullable<Timestamp>,
        asked -> Nullable<Timestamp>,
        ask_now -> Bool,
        created -> Timestamp,
        updated -> Timestamp,
    }
}
