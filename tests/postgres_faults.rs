//! PostgreSQL down, exhausted or slow: every request fails closed with 503
//! `temporarily_unavailable` within the configured timeout, and the app serves
//! again once the database is back, without a restart. These tests stop and start
//! a PostgreSQL server of their own.
#![cfg(feature = "postgres")]

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{
    app::{get_with, routes, send},
    assert_unavailable, girder_scopes,
    pg_server::PgServer,
    Users,
};
use scopegate::{
    store::{PgConfig, PgStore},
    AuthState, NewToken, ScopeGate, TokenRequest,
};

const TIMEOUT: Duration = Duration::from_millis(500);
/// `PgConfig`'s default lag limit: the longest the cache serves from memory
/// past the feed's last answered round trip.
const LAG_LIMIT: Duration = Duration::from_millis(200);

fn server() -> Option<PgServer> {
    let server = PgServer::start();
    if server.is_none() {
        common::skip("no PostgreSQL server binaries under /usr/lib/postgresql");
    }
    server
}

async fn store(url: &str, connections: u32) -> PgStore {
    let config = PgConfig::default()
        .with_timeout(TIMEOUT)
        .with_max_connections(connections);
    PgStore::connect_with(url, config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_is_503_never_access_and_the_app_recovers_without_restart() {
    let Some(server) = server() else { return };
    let users = Users::default();
    let bob = users.add("bob", false);
    // The builder's default cache subscribes to the store's notifications.
    let state = AuthState::builder(
        ScopeGate::builder(store(&server.url(), 4).await, users).with_registry(girder_scopes()),
    )
    .build()
    .unwrap();
    let app = routes(state.clone());
    let gate = state.gate();
    let cached = gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    let revoked = gate
        .create_token(NewToken::for_user(bob.clone()))
        .await
        .unwrap();
    for token in [&cached, &revoked] {
        assert_eq!(
            send(&app, get_with("/user", Some(token.secret.expose())))
                .await
                .status,
            StatusCode::OK
        );
    }

    server.stop();
    let started = Instant::now();
    let mut last_ok = Duration::ZERO;
    // Even a token that sat in the cache is refused once the feed has noticed its
    // connection died with the server (no revocation can commit meanwhile): the
    // cache is then bypassed.
    loop {
        let reply = send(&app, get_with("/user", Some(cached.secret.expose()))).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert_eq!(reply.status, StatusCode::OK);
        last_ok = started.elapsed();
        // The cache stops serving within the lag limit (200 ms by default); a
        // dropped connection is noticed sooner. 100 ms more for scheduling.
        assert!(
            started.elapsed() < LAG_LIMIT + Duration::from_millis(100),
            "the cache served past the lag limit: {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "last 200 after {last_ok:?}, first 503 after {:?}",
        started.elapsed()
    );
    for token in [&cached, &revoked] {
        let reply = send(&app, get_with("/user", Some(token.secret.expose()))).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{:?}",
            reply.body
        );
        assert_eq!(reply.error(), "temporarily_unavailable");
    }
    let reply = send(
        &app,
        get_with("/token/current", Some(cached.secret.expose())),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < 10 * TIMEOUT,
        "refusals took {:?}",
        started.elapsed()
    );
    assert!(!gate.health().await.is_healthy());
    assert_unavailable(&gate.revoke_token(&revoked.token.id).await);

    server.start_again();
    let back = Instant::now();
    loop {
        let reply = send(&app, get_with("/user", Some(cached.secret.expose()))).await;
        if reply.status == StatusCode::OK {
            break;
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(back.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gate.health().await.is_healthy());
    gate.revoke_token(&revoked.token.id).await.unwrap();
    let reply = send(&app, get_with("/user", Some(revoked.secret.expose()))).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_times_out_into_503_instead_of_hanging() {
    let Some(server) = server() else { return };
    let users = Users::default();
    let bob = users.add("bob", false);
    let pg = store(&server.url(), 1).await;
    let gate = ScopeGate::builder(pg.clone(), users)
        .without_cache()
        .with_registry(girder_scopes())
        .build()
        .unwrap();
    let issued = gate.create_token(NewToken::for_user(bob)).await.unwrap();
    let held = pg.pool().acquire().await.unwrap();
    let started = Instant::now();
    assert_unavailable(&gate.authenticate(issued.secret.expose()).await);
    let took = started.elapsed();
    assert!(took >= TIMEOUT && took < 4 * TIMEOUT, "took {took:?}");
    drop(held);
    gate.authenticate(issued.secret.expose()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_stuck_behind_a_row_lock_times_out_into_503_and_mints_nothing() {
    let Some(server) = server() else { return };
    let users = Users::default();
    let bob = users.add("bob", false);
    let pg = store(&server.url(), 4).await;
    let gate = ScopeGate::builder(pg.clone(), users)
        .without_cache()
        .with_registry(girder_scopes())
        .build()
        .unwrap();
    let key = gate
        .create_api_key(&bob, scopegate::NewApiKey::new("k"))
        .await
        .unwrap();
    // Another session holds the key's row, as a long transaction would.
    let mut blocker = pg.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM scopegate.api_keys WHERE id = $1 FOR UPDATE")
        .bind(key.key.id.as_str())
        .execute(&mut *blocker)
        .await
        .unwrap();
    let started = Instant::now();
    assert_unavailable(
        &gate
            .exchange_api_key(key.secret.expose(), TokenRequest::default())
            .await,
    );
    assert!(started.elapsed() < 4 * TIMEOUT);
    blocker.rollback().await.unwrap();
    // The abandoned exchange left nothing behind; the next one works.
    tokio::time::sleep(TIMEOUT).await;
    let tokens = gate
        .tokens_of_user(&bob, scopegate::store::Page::default())
        .await
        .unwrap();
    assert!(tokens.is_empty(), "{tokens:?}");
    gate.exchange_api_key(key.secret.expose(), TokenRequest::default())
        .await
        .unwrap();
}
