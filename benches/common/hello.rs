//! The routes the per-request benchmarks compare: one `GET /hello`, bare, behind
//! scopegate's layer, and behind the layer plus a scope guard, with a live token.
#![allow(dead_code)] // each benchmark uses what it needs

use std::path::Path;

use axum::{routing::get, Router};
use scopegate::{AuthState, CacheConfig, NewToken, RequireScope, ScopeRegistry, SledStore};

use super::Users;

scopegate::scopes! {
    pub(crate) struct DataRead = "core.data.read";
}

pub(crate) async fn hello() -> &'static str {
    "hello"
}

/// The three routers, and the secret of a live full-session token.
pub(crate) struct HelloApps {
    pub(crate) bare: Router,
    pub(crate) layer: Router,
    pub(crate) guarded: Router,
    pub(crate) token: String,
}

/// The routers over a sled store in `dir`, cached with `cache`.
pub(crate) async fn hello_apps(dir: &Path, cache: CacheConfig) -> HelloApps {
    let state = AuthState::builder(SledStore::open(dir).unwrap(), Users)
        .with_registry(ScopeRegistry::of::<DataRead>().unwrap())
        .with_cache(cache)
        .build()
        .unwrap();
    let issued = state
        .gate()
        .create_token(NewToken::for_user("bench".into()))
        .await
        .unwrap();
    // `with_state(())` turns each handler into its final service once, as
    // `axum::serve` does; a router driven by `oneshot` without it rebuilds its
    // route (and every layer's service) per request.
    HelloApps {
        bare: Router::new().route("/hello", get(hello)).with_state(()),
        layer: Router::new()
            .route("/hello", get(hello))
            .layer(state.layer())
            .with_state(()),
        guarded: Router::new()
            .route("/hello", get(|_: RequireScope<DataRead>| hello()))
            .layer(state.layer())
            .with_state(()),
        token: issued.secret.expose().to_owned(),
    }
}
