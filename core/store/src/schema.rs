// Mirrors migrations/; keep in step with every migration. `refunds` (more
// columns than diesel's default table size) and the events' cancellation
// columns are read with SQL in `refunds.rs` and `events.rs`.

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        phone -> Nullable<Text>,
    }
}

diesel::table! {
    events (id) {
        id -> Uuid,
        organizer_id -> Uuid,
        name -> Text,
        description -> Text,
        venue -> Text,
        time_zone -> Text,
        start_time -> Timestamptz,
        end_time -> Timestamptz,
        sales_start_time -> Timestamptz,
        sales_end_time -> Timestamptz,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        max_tickets_per_customer -> Int4,
        waiting_room -> Nullable<Jsonb>,
        payment -> Nullable<Jsonb>,
    }
}

diesel::table! {
    ticket_categories (id) {
        id -> Uuid,
        event_id -> Uuid,
        name -> Text,
        currency_code -> Text,
        price_units -> Int8,
        price_nanos -> Int4,
        capacity -> Int4,
        max_per_order -> Int4,
        sales_start_time -> Nullable<Timestamptz>,
        sales_end_time -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(api_keys -> users (owner_id));
diesel::joinable!(events -> users (organizer_id));
diesel::joinable!(ticket_categories -> events (event_id));

diesel::table! {
    inventory_buckets (ticket_category_id, bucket) {
        ticket_category_id -> Uuid,
        bucket -> Int2,
        capacity -> Int4,
        held -> Int4,
    }
}

diesel::table! {
    orders (id) {
        id -> Uuid,
        user_id -> Uuid,
        event_id -> Uuid,
        status -> Text,
        currency_code -> Text,
        total_units -> Int8,
        total_nanos -> Int4,
        idempotency_key -> Text,
        request_digest -> Text,
        expire_time -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        refunded_units -> Int8,
    }
}

diesel::table! {
    order_items (order_id, ticket_category_id) {
        order_id -> Uuid,
        ticket_category_id -> Uuid,
        quantity -> Int4,
        unit_price_units -> Int8,
        unit_price_nanos -> Int4,
    }
}

diesel::table! {
    tickets (id) {
        id -> Uuid,
        order_id -> Uuid,
        event_id -> Uuid,
        ticket_category_id -> Uuid,
        code -> Text,
        status -> Text,
        created_at -> Timestamptz,
        version -> Int8,
    }
}

diesel::table! {
    scanners (id) {
        id -> Uuid,
        event_id -> Uuid,
        name -> Text,
        token_hash -> Bytea,
        created_by -> Uuid,
        revoked_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    event_signing_keys (event_id) {
        event_id -> Uuid,
        public_key -> Bytea,
        sealed_private_key -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    payments (id) {
        id -> Uuid,
        order_id -> Uuid,
        provider -> Text,
        status -> Text,
        provider_status -> Text,
        token -> Text,
        redirect_url -> Text,
        gross_amount -> Int8,
        checked_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        payment_type -> Nullable<Text>,
    }
}

diesel::table! {
    refunded_tickets (ticket_id) {
        ticket_id -> Uuid,
        refund_id -> Uuid,
    }
}

diesel::table! {
    audit_log (id) {
        id -> Int8,
        event_id -> Uuid,
        actor_id -> Nullable<Uuid>,
        action -> Text,
        subject_id -> Text,
        before -> Nullable<Jsonb>,
        after -> Nullable<Jsonb>,
        created_at -> Timestamptz,
        api_key_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Uuid,
        owner_id -> Uuid,
        name -> Text,
        scopes -> Array<Text>,
        secret_sha256 -> Bytea,
        expire_time -> Nullable<Timestamptz>,
        revoke_time -> Nullable<Timestamptz>,
        create_time -> Timestamptz,
    }
}

diesel::table! {
    payment_notifications (id) {
        id -> Int8,
        provider -> Text,
        source -> Text,
        order_id -> Text,
        transaction_status -> Text,
        body -> Jsonb,
        outcome -> Text,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        kind -> Text,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        processed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    reports (id) {
        id -> Uuid,
        event_id -> Uuid,
        requested_by -> Uuid,
        status -> Text,
        csv -> Nullable<Text>,
        error -> Nullable<Text>,
        created_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(order_items -> orders (order_id));
diesel::joinable!(payments -> orders (order_id));
diesel::joinable!(tickets -> orders (order_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    events,
    ticket_categories,
    inventory_buckets,
    orders,
    order_items,
    tickets,
    event_signing_keys,
    payments,
    payment_notifications,
    outbox,
    reports,
    scanners,
    refunded_tickets,
    audit_log,
    api_keys
);
