// Mirrors migrations/; keep in step with every migration.

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
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

diesel::joinable!(events -> users (organizer_id));
diesel::joinable!(ticket_categories -> events (event_id));
diesel::allow_tables_to_appear_in_same_query!(users, events, ticket_categories);
