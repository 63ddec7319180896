//! The conformance suite on PostgreSQL, with and without the cache, plus what only
//! a shared backend must do: stay correct across instances.
#![cfg(feature = "postgres")]

mod common;

mod plain {
    use crate::conformance_tests;
    conformance_tests!(crate::common::pg::PgBackend);
}

mod cached {
    use crate::conformance_tests;
    conformance_tests!(crate::common::pg::CachedPgBackend);
}

crate::cancellation_tests!(crate::common::pg::PgReal);

mod schema {
    use std::time::Duration;

    use scopegate::store::{PgConfig, PgStore, StoreErrorKind, TokenStore};
    use sqlx::Row;

    use crate::common::pg;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_starting_together_on_a_fresh_database_migrate_it_once() {
        let schema = pg::schema_of(tempfile::tempdir().unwrap().path());
        let mut starts = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let schema = schema.clone();
            starts.spawn(async move { pg::open(&schema).await });
        }
        while let Some(store) = starts.join_next().await {
            store.unwrap();
        }
        let pool = sqlx::PgPool::connect(&pg::url()).await.unwrap();
        let versions = sqlx::query(&format!("SELECT version FROM {schema}.schema_version"))
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].get::<i32, _>(0), 6, "every migration applied");
    }

    /// Another replica's migration holds the lock for longer than one request may
    /// take: start-up waits for it (under its own, longer limit) instead of
    /// failing on the per-call timeout, and gives up once that limit passes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_up_waits_behind_another_migration_longer_than_a_request_may_take() {
        use std::time::Instant;

        let schema = pg::schema_of(tempfile::tempdir().unwrap().path());
        let pool = sqlx::PgPool::connect(&pg::url()).await.unwrap();
        let mut holder = pool.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("scopegate migrations {schema}"))
            .execute(&mut *holder)
            .await
            .unwrap();
        let per_call = Duration::from_millis(200);
        let config = |connect: Duration| {
            pg::config(&schema)
                .with_timeout(per_call)
                .with_connect_timeout(connect)
        };

        let started = Instant::now();
        let err = PgStore::connect_with(&pg::url(), config(Duration::from_millis(600)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(600));

        let waiting = tokio::spawn({
            let url = pg::url();
            let config = config(Duration::from_secs(30));
            async move { PgStore::connect_with(&url, config).await }
        });
        tokio::time::sleep(4 * per_call).await;
        assert!(!waiting.is_finished(), "start-up did not wait for the lock");
        holder.rollback().await.unwrap();
        let store = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("start-up still waiting after the lock was released")
            .unwrap()
            .unwrap();
        assert!(store.health().await.is_healthy());
    }

    /// SQL that takes `schema` back to what version 3 wrote (migrations 6, 5 and
    /// 4 undone).
    fn undo_migrations_from_4(schema: &str) -> String {
        format!(
            "DROP TABLE {schema}.feed_key; \
             DROP INDEX {schema}.api_keys_by_cap; \
             ALTER TABLE {schema}.api_keys DROP COLUMN capped_below, DROP COLUMN capped_at; \
             ALTER TABLE {schema}.tokens DROP COLUMN sequence; \
             DROP SEQUENCE {schema}.token_sequence; \
             ALTER TABLE {schema}.api_keys DROP COLUMN revoked_below, DROP COLUMN live_tokens; \
             DROP TABLE {schema}.revoked_users, {schema}.pending_purges; \
             DROP INDEX {schema}.api_keys_in_byte_order;"
        )
    }

    #[tokio::test]
    async fn a_database_of_the_first_schema_version_is_upgraded_and_keeps_its_records() {
        use chrono::{SubsecRound, Utc};
        use scopegate::{secret::SecretDigest, store::TokenStore, ApiKeyId, Token, TokenId};

        let schema = pg::schema_of(tempfile::tempdir().unwrap().path());
        drop(pg::open(&schema).await);
        // Back to what version 1 wrote: no last_use column on tokens, no locked
        // column on keys, no revocation marks, and a token and a key in them.
        let pool = sqlx::PgPool::connect(&pg::url()).await.unwrap();
        let now = Utc::now().trunc_subsecs(6);
        let downgrade = format!(
            "{undo_4} \
             ALTER TABLE {schema}.tokens DROP COLUMN last_use; \
             ALTER TABLE {schema}.api_keys DROP COLUMN locked; \
             UPDATE {schema}.schema_version SET version = 1; \
             INSERT INTO {schema}.tokens (digest, id, user_id, scopes, created, expires) \
             VALUES (decode(repeat('ab', 32), 'hex'), 'old-token', 'bob', \
                     ARRAY['core.user_auth'], '{now}', '{later}'); \
             INSERT INTO {schema}.api_keys (id, user_id, name, active, created, digest, start) \
             VALUES ('old-key', 'bob', 'old', false, '{now}', decode(repeat('cd', 32), 'hex'), \
                     'sg_key_abcd')",
            undo_4 = undo_migrations_from_4(&schema),
            later = now + chrono::TimeDelta::days(1),
        );
        sqlx::raw_sql(&downgrade).execute(&pool).await.unwrap();

        let store = pg::open(&schema).await;
        let digest = SecretDigest::from_bytes([0xab; 32]);
        let token: Token = store.token_by_digest(&digest).await.unwrap().unwrap();
        assert_eq!(token.id, TokenId::from("old-token"));
        assert_eq!(token.last_use, None);
        store.touch_token(&token.id, now).await.unwrap();
        let touched = store.token_by_id(&token.id).await.unwrap().unwrap();
        assert_eq!(touched.last_use, Some(now));
        // A key deactivated before locks existed was deactivated by nobody in particular.
        let key = store
            .api_key_by_id(&ApiKeyId::from("old-key"))
            .await
            .unwrap()
            .unwrap();
        assert!(!key.active && !key.locked);
        // A token from before revocation marks is revoked by the first one.
        store
            .revoke_user(&"bob".into(), scopegate::store::KeyDisposal::Deactivate)
            .await
            .unwrap();
        assert!(store.token_by_digest(&digest).await.unwrap().is_none());
    }

    /// `url` with `user` instead of its user (the test server trusts loopback).
    fn as_user(url: &str, user: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let host = rest.split_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{user}@{host}")
    }

    #[tokio::test]
    async fn a_role_without_ddl_rights_starts_on_an_up_to_date_schema() {
        let schema = pg::schema_of(tempfile::tempdir().unwrap().path());
        drop(pg::open(&schema).await);
        let pool = sqlx::PgPool::connect(&pg::url()).await.unwrap();
        let role = format!("app_{schema}");
        let grants = format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
             REVOKE CREATE ON SCHEMA public FROM PUBLIC; \
             GRANT USAGE ON SCHEMA {schema} TO {role}; \
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}; \
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}"
        );
        sqlx::raw_sql(&grants).execute(&pool).await.unwrap();
        let store = scopegate::store::PgStore::connect_with(
            &as_user(&pg::url(), &role),
            pg::config(&schema),
        )
        .await
        .expect("an up-to-date schema needs no DDL rights");
        let users = crate::common::Users::default();
        let bob = users.add("bob", false);
        let gate = scopegate::ScopeGate::builder(store, users)
            .without_cache()
            .build()
            .unwrap();
        let key = gate
            .create_api_key(&bob, scopegate::NewApiKey::new("k"))
            .await
            .unwrap();
        gate.exchange_api_key(key.secret.expose(), scopegate::TokenRequest::new())
            .await
            .unwrap();
        gate.delete_api_key(&key.key.id).await.unwrap();
        gate.purge_expired().await.unwrap();
    }

    #[tokio::test]
    async fn a_migration_waiting_for_a_table_lock_never_holds_other_queries_behind_it() {
        use std::time::Instant;

        let schema = pg::schema_of(tempfile::tempdir().unwrap().path());
        drop(pg::open(&schema).await);
        let pool = sqlx::PgPool::connect(&pg::url()).await.unwrap();
        // Back to version 3: migration 4 alters `tokens` again at the next start.
        let downgrade = format!(
            "{undo_4} UPDATE {schema}.schema_version SET version = 3",
            undo_4 = undo_migrations_from_4(&schema)
        );
        sqlx::raw_sql(&downgrade).execute(&pool).await.unwrap();
        // A long transaction that has read `tokens` holds a lock the migration's
        // ALTER must wait for.
        let mut holder = pool.begin().await.unwrap();
        sqlx::query(&format!("SELECT count(*) FROM {schema}.tokens"))
            .execute(&mut *holder)
            .await
            .unwrap();
        let migrating = tokio::spawn({
            let schema = schema.clone();
            async move { pg::open(&schema).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Meanwhile the fleet's queries on `tokens` go on.
        let mut worst = Duration::ZERO;
        for _ in 0..10 {
            let started = Instant::now();
            sqlx::query(&format!("SELECT count(*) FROM {schema}.tokens"))
                .execute(&pool)
                .await
                .unwrap();
            worst = worst.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            worst < Duration::from_millis(1500),
            "a query waited {worst:?} behind the migration"
        );
        assert!(!migrating.is_finished(), "the ALTER cannot have run yet");
        holder.commit().await.unwrap();
        let store = tokio::time::timeout(Duration::from_secs(10), migrating)
            .await
            .expect("the migration finishes once the lock is free")
            .unwrap();
        drop(store);
        let version: i32 =
            sqlx::query_scalar(&format!("SELECT version FROM {schema}.schema_version"))
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(version, 6);
    }

    #[tokio::test]
    async fn an_unreachable_database_is_refused_at_start_with_its_cause() {
        // A port nothing listens on: the probe connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = PgConfig::default().with_timeout(Duration::from_secs(2));
        let err = PgStore::connect_with(&format!("postgres://nobody@127.0.0.1:{port}/x"), config)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable);
        let chain = scopegate::store::error_chain(&err);
        assert!(chain.to_lowercase().contains("refused"), "{chain}");
    }

    #[test]
    fn schema_names_that_are_not_plain_identifiers_are_refused() {
        for bad in ["", "Upper", "9lives", "a-b", "a;drop", &"x".repeat(41)] {
            assert!(PgConfig::default().with_schema(bad).is_err(), "{bad:?}");
        }
        assert!(PgConfig::default().with_schema("app_auth_2").is_ok());
    }

    #[test]
    fn channel_names_that_are_not_plain_identifiers_are_refused() {
        for bad in ["", "Upper", "9lives", "a-b", "a;notify", &"x".repeat(64)] {
            assert!(PgConfig::default().with_channel(bad).is_err(), "{bad:?}");
        }
        let config = PgConfig::default().with_schema("app").unwrap();
        assert_eq!(config.channel(), "app_revoked", "the default");
        let named = config.with_channel("x".repeat(63)).unwrap();
        assert_eq!(named.channel(), "x".repeat(63));
    }

    /// A reserved key word would pass a plain identifier check and fail only at
    /// start. The server's own list is the authority.
    #[tokio::test]
    async fn every_key_word_the_server_reserves_is_refused_as_a_schema_name() {
        let pool = sqlx::PgPool::connect(&pg::url()).await.unwrap();
        let reserved =
            sqlx::query("SELECT word FROM pg_get_keywords() WHERE catcode IN ('R', 'T')")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(reserved.len() > 50, "{} reserved words", reserved.len());
        for row in reserved {
            let word: String = row.get(0);
            let refused = PgConfig::default().with_schema(&word);
            let message = scopegate::store::error_chain(&refused.expect_err(&word));
            assert!(message.contains("reserved"), "{word}: {message}");
        }
        // Unreserved ones are fine names, and the store starts on one.
        for fine in ["users", "key", "token", "scopegate"] {
            assert!(PgConfig::default().with_schema(fine).is_ok(), "{fine}");
        }
        let store = PgStore::connect_with(&pg::url(), pg::config("key")).await;
        assert!(store.is_ok(), "{:?}", store.err());
    }
}

mod sweepers {
    use std::time::Duration;

    use chrono::{TimeDelta, Utc};
    use scopegate::{clock::ManualClock, store::TokenStore, NewApiKey, ScopeGate, TokenRequest};

    use crate::common::{girder_scopes, pg, Users};

    /// Replicas' sweepers start together and tick together. Each takes expired
    /// tokens (skipping those another holds), then deletes expired keys with
    /// their tokens. Were that delete to wait on tokens another sweeper took,
    /// two sweepers each holding some of the other's key's tokens would
    /// deadlock, and one would fail. Here a transaction plays the other sweeper
    /// and holds one of the key's tokens: the purge must finish without it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_never_waits_on_tokens_another_purge_holds() {
        let schema = pg::schema_of(tempfile::tempdir().unwrap().path());
        let store = pg::open(&schema).await;
        let users = Users::default();
        let bob = users.add("bob", false);
        let clock = ManualClock::new(Utc::now());
        let gate = ScopeGate::builder(pg::open(&schema).await, users)
            .without_cache()
            .with_registry(girder_scopes())
            .with_clock(clock.clone())
            .build()
            .unwrap();
        let key = NewApiKey::new("expiring").expires_in(Duration::from_secs(3600));
        let key = gate.create_api_key(&bob, key).await.unwrap();
        for _ in 0..20 {
            gate.exchange_api_key(key.secret.expose(), TokenRequest::new())
                .await
                .unwrap();
        }
        clock.advance(TimeDelta::hours(2));
        let now = clock.now();
        let pool = sqlx::PgPool::connect(&pg::url()).await.unwrap();
        let mut other = pool.begin().await.unwrap();
        let held = format!("SELECT digest FROM {schema}.tokens LIMIT 1 FOR UPDATE");
        sqlx::query(&held).fetch_one(&mut *other).await.unwrap();

        let purged = tokio::time::timeout(Duration::from_secs(5), store.purge_expired(now, 1_000))
            .await
            .expect("the purge waited on a token another transaction holds")
            .unwrap();
        assert_eq!(purged.api_keys, 1);
        assert_eq!(purged.tokens.len(), 19, "all but the held token");
        // The one held is expired, like its key, and goes with the next purge.
        other.rollback().await.unwrap();
        let rest = store.purge_expired(now, 1_000).await.unwrap();
        assert_eq!(rest.tokens.len(), 1);
        assert_eq!(store.purge_expired(now, 1_000).await.unwrap().examined, 0);
    }

    /// A key's expiry moved earlier caps its older tokens in one write; once
    /// that cap has passed (the key's expiry moved out again meanwhile), the
    /// sweeper counts them gone from the key's token limit and purges them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_passed_expiry_cap_frees_its_keys_token_limit_and_its_tokens_are_purged() {
        use scopegate::Error;

        use crate::common::expires_in_days;

        let schema = pg::schema_of(tempfile::tempdir().unwrap().path());
        let store = pg::open(&schema).await;
        let users = Users::default();
        let bob = users.add("bob", false);
        let clock = ManualClock::new(Utc::now());
        let gate = ScopeGate::builder(store.clone(), users)
            .without_cache()
            .with_registry(girder_scopes())
            .with_clock(clock.clone())
            .with_max_tokens_per_key(2)
            .build()
            .unwrap();
        let key = gate
            .create_api_key(&bob, NewApiKey::new("k"))
            .await
            .unwrap();
        let secret = key.secret.expose();
        let mut capped = Vec::new();
        for _ in 0..2 {
            capped.push(
                gate.exchange_api_key(secret, TokenRequest::new())
                    .await
                    .unwrap(),
            );
        }
        gate.update_api_key(&key.key.id, expires_in_days(Some(0.25)))
            .await
            .unwrap();
        gate.update_api_key(&key.key.id, expires_in_days(None))
            .await
            .unwrap();
        clock.advance(TimeDelta::hours(7));
        let refused = gate.exchange_api_key(secret, TokenRequest::new()).await;
        assert!(matches!(refused, Err(Error::TooManyTokens)), "{refused:?}");

        let purged = gate.purge_expired().await.unwrap();
        assert!(purged.changed_keys.contains(&key.key.id), "{purged:?}");
        gate.purge_expired().await.unwrap();
        for token in &capped {
            let record = store.token_by_digest(&token.token.digest).await.unwrap();
            assert!(record.is_none(), "a capped token's record outlived its cap");
        }
        for _ in 0..2 {
            gate.exchange_api_key(secret, TokenRequest::new())
                .await
                .unwrap();
        }
    }
}
