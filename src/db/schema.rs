//! The database schema, as diesel sees it. Mirrors `migrations/`; both
//! backends produce these columns (ids are 64-bit on both).

diesel::table! {
    user_auth_sessions (id) {
        id -> BigInt,
        session_id -> Text,
        app_id -> Text,
        user_id -> Nullable<Text>,
        open_id -> Nullable<Text>,
        union_id -> Nullable<Text>,
        user_name -> Nullable<Text>,
        email -> Nullable<Text>,
        avatar_url -> Nullable<Text>,
        auth_method -> Text,
        state -> Text,
        access_token_enc -> Nullable<Text>,
        refresh_token_enc -> Nullable<Text>,
        scope -> Nullable<Text>,
        token_expires_at -> Nullable<Timestamp>,
        refresh_expires_at -> Nullable<Timestamp>,
        expires_at -> Timestamp,
        error -> Nullable<Text>,
        message_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        last_synced_at -> Nullable<Timestamp>,
        refresh_claimed_by -> Nullable<Text>,
        refresh_claimed_until -> Nullable<Timestamp>,
        refresh_attempts -> Integer,
        oauth_state_hash -> Nullable<Text>,
        pkce_verifier_enc -> Nullable<Text>,
        token_generation -> BigInt,
    }
}

diesel::table! {
    processed_events (event_id) {
        event_id -> Text,
        event_type -> Text,
        received_at -> Timestamp,
    }
}

diesel::table! {
    sync_runs (id) {
        id -> BigInt,
        trigger -> Text,
        started_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        users_total -> BigInt,
        users_updated -> BigInt,
        users_failed -> BigInt,
        error -> Nullable<Text>,
        status -> Text,
        users_done -> BigInt,
    }
}

diesel::table! {
    device_tokens (profile) {
        profile -> Text,
        host -> Text,
        client_id -> Nullable<Text>,
        access_token_enc -> Nullable<Text>,
        refresh_token_enc -> Nullable<Text>,
        expires_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    event_outbox (id) {
        id -> BigInt,
        event_id -> Text,
        event_type -> Text,
        sink -> Text,
        payload -> Text,
        state -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    user_auth_sessions,
    processed_events,
    sync_runs,
    device_tokens,
    event_outbox
);
