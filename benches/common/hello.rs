//! The routes the per-request benchmarks compare: one `GET /hello`, bare, behind
//! the cheapest possible identity layer, behind a hand-written SHA-256 + moka +
//! sled middleware, behind scopegate's layer, and behind the layer plus a scope
//! guard, with a live token.
#![allow(dead_code)] // each benchmark uses what it needs

use std::{path::Path, sync::Arc};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use scopegate::{
    middleware::AuthService,
    store::{CacheConfig, SledStore},
    AuthState, NewToken, RequireScope, ScopeGate, ScopeRegistry,
};
use sha2::{Digest, Sha256};
use tower::{
    util::{MapRequest, MapRequestLayer},
    Layer,
};

use super::Users;

scopegate::scopes! {
    pub(crate) struct DataRead = "core.data.read";
}

pub(crate) async fn hello() -> &'static str {
    "hello"
}

/// The routers, and the secret of a live full-session token.
pub(crate) struct HelloApps {
    pub(crate) bare: Router,
    /// The least any layer that attaches an identity costs: it inserts one
    /// constant `Arc<str>` extension and checks nothing.
    pub(crate) floor: Router,
    /// [`handwritten_auth`] over its own sled tree in `dir/handwritten`.
    pub(crate) handwritten: Router,
    pub(crate) layer: Router,
    pub(crate) guarded: Router,
    /// `floor`'s layer wrapped around the whole router rather than added with
    /// `Router::layer`: axum then neither boxes the layered route nor its future.
    pub(crate) floor_wrapped: MapRequest<Router, fn(Request) -> Request>,
    /// `guarded`, with scopegate's layer wrapped around the whole router.
    pub(crate) guarded_wrapped: AuthService<Router>,
    pub(crate) token: String,
    /// Another live full-session token, of another user: for a second thread
    /// that must not share the first token's counts.
    pub(crate) other_token: String,
    /// The state behind `layer` and `guarded`.
    pub(crate) state: AuthState,
}

/// `GET /hello`, with `Authorization: Bearer <bearer>` if given.
pub(crate) fn hello_request(bearer: Option<&str>) -> Request {
    let mut request = Request::builder().uri("/hello");
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    request.body(Body::empty()).unwrap()
}

/// The constant identity the `floor` layers insert.
fn insert_identity(mut request: Request) -> Request {
    static IDENTITY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "bench".into());
    request.extensions_mut().insert(IDENTITY.clone());
    request
}

/// The routers over a sled store in `dir`, cached with `cache`.
pub(crate) async fn hello_apps(dir: &Path, cache: CacheConfig) -> HelloApps {
    let state = AuthState::builder(
        ScopeGate::builder(SledStore::open(dir).unwrap(), Users)
            .with_registry(ScopeRegistry::of::<DataRead>().unwrap())
            .with_cache(cache),
    )
    .build()
    .unwrap();
    let mut secrets = Vec::new();
    for user in ["bench", "bench-2"] {
        let issued = state
            .gate()
            .create_token(NewToken::for_user(user.into()))
            .await
            .unwrap();
        secrets.push(issued.secret.expose().to_owned());
    }
    // `with_state(())` turns each handler into its final service once, as
    // `axum::serve` does; a router driven by `oneshot` without it rebuilds its
    // route (and every layer's service) per request.
    let tree = sled::open(dir.join("handwritten"))
        .unwrap()
        .open_tree("t")
        .unwrap();
    for secret in &secrets {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        tree.insert(digest, "bench").unwrap();
    }
    let [bearer, other_token]: [String; 2] = secrets.try_into().unwrap();
    let handwritten = Handwritten {
        cache: moka::future::Cache::new(100_000),
        tree,
    };
    HelloApps {
        bare: Router::new().route("/hello", get(hello)).with_state(()),
        floor: Router::new()
            .route("/hello", get(hello))
            .layer(MapRequestLayer::new(insert_identity))
            .with_state(()),
        handwritten: Router::new()
            .route("/hello", get(hello))
            .layer(middleware::from_fn_with_state(
                handwritten,
                handwritten_auth,
            ))
            .with_state(()),
        layer: Router::new()
            .route("/hello", get(hello))
            .layer(state.layer())
            .with_state(()),
        guarded: Router::new()
            .route("/hello", get(|_: RequireScope<DataRead>| hello()))
            .layer(state.layer())
            .with_state(()),
        floor_wrapped: MapRequestLayer::new(insert_identity as fn(Request) -> Request)
            .layer(Router::new().route("/hello", get(hello)).with_state(())),
        guarded_wrapped: state.layer().layer(
            Router::new()
                .route("/hello", get(|_: RequireScope<DataRead>| hello()))
                .with_state(()),
        ),
        token: bearer,
        other_token,
        state,
    }
}

/// The hand-written alternative: digest the bearer, look it up in moka, else in sled.
#[derive(Clone)]
pub(crate) struct Handwritten {
    cache: moka::future::Cache<[u8; 32], Arc<str>>,
    tree: sled::Tree,
}

/// What an app might write instead of scopegate: SHA-256 of the bearer, a moka
/// hit, else a sled read; the user's name as an extension.
pub(crate) async fn handwritten_auth(
    State(auth): State<Handwritten>,
    mut request: Request,
    next: Next,
) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(bearer) = bearer else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let digest: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
    let user = match auth.cache.get(&digest).await {
        Some(user) => Some(user),
        None => match auth.tree.get(digest) {
            Ok(Some(bytes)) => {
                let user: Arc<str> = String::from_utf8_lossy(&bytes).into();
                auth.cache.insert(digest, user.clone()).await;
                Some(user)
            }
            _ => None,
        },
    };
    match user {
        Some(user) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}
