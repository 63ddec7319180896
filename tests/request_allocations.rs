//! What a request for a cached token allocates through the layer wrapped around
//! the router (the README's cheapest placement), beyond the same route without
//! the layer: the loaded user, which holds the token and is the request's
//! `Principal`, and the box `http` keeps the `Authentication` extension in.
//! Nothing else: the extension map does not regrow for the router's own inserts,
//! the user's id is shared, not copied, and the principal is no allocation of its
//! own.
//!
//! Allocation calls are counted, not time: the count is the same on any machine.
//! The requests run on this thread (a current-thread runtime), but sled's own
//! threads may allocate at any moment and the counter is global, so each route
//! is counted over several short windows and the fewest allocations taken:
//! another thread only ever adds.

mod common;

use std::alloc::System;

use axum::{body::Body, http::Request, routing::get, Router};
use common::Users;
use scopegate::{
    store::{CacheConfig, SledStore},
    AuthState, NewToken, RequireScope, ScopeGate, ScopeRegistry,
};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower::{Layer, Service, ServiceExt};

#[global_allocator]
static HEAP: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

scopegate::scopes! {
    struct DataRead = "core.data.read";
}

async fn hello() -> &'static str {
    "hello"
}

fn request(bearer: &str) -> Request<Body> {
    Request::get("/hello")
        .header("authorization", format!("Bearer {bearer}"))
        .body(Body::empty())
        .unwrap()
}

/// The fewest allocations ten requests through `app` made, over 20 windows.
async fn allocations_per_ten_requests<S>(app: &S, bearer: &str) -> usize
where
    S: Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    const WINDOWS: usize = 20;
    const REQUESTS: usize = 10;
    let mut fewest = usize::MAX;
    for _ in 0..WINDOWS {
        // Built outside the count: the request is the client's, not the route's.
        let requests: Vec<_> = (0..REQUESTS).map(|_| request(bearer)).collect();
        let region = Region::new(HEAP);
        for request in requests {
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
        }
        fewest = fewest.min(region.change().allocations);
    }
    fewest
}

#[tokio::test(flavor = "current_thread")]
async fn a_cached_token_costs_two_allocations_through_the_wrapped_layer() {
    let dir = tempfile::tempdir().unwrap();
    // The tests' loader answers at once from its table, without allocating.
    let users = Users::default();
    let member = users.add("member", false);
    let state = AuthState::builder(
        ScopeGate::builder(SledStore::open(dir.path()).unwrap(), users)
            .with_registry(ScopeRegistry::of::<DataRead>().unwrap())
            .with_cache(CacheConfig::default()),
    )
    .build()
    .unwrap();
    let issued = state
        .gate()
        .create_token(NewToken::for_user(member))
        .await
        .unwrap();
    let bearer = issued.secret.expose().to_owned();
    let bare = Router::new().route("/hello", get(hello)).with_state(());
    let guarded = state.layer().layer(
        Router::new()
            .route("/hello", get(|_: RequireScope<DataRead>| hello()))
            .with_state(()),
    );
    // Warm up: the first request loads the token into the cache and records its
    // use; the later ones are the cached path this test counts.
    for _ in 0..3 {
        let response = guarded.clone().oneshot(request(&bearer)).await.unwrap();
        assert_eq!(response.status(), 200);
    }

    let bare_allocations = allocations_per_ten_requests(&bare, &bearer).await;
    let guarded_allocations = allocations_per_ten_requests(&guarded, &bearer).await;
    eprintln!("ten requests: bare {bare_allocations} allocations, guarded {guarded_allocations}");
    assert_eq!(
        guarded_allocations,
        bare_allocations + 2 * 10,
        "ten requests for a cached token through the wrapped layer should add the \
         loaded user (the principal) and the extension's box each to the bare \
         route's {bare_allocations}"
    );
}
