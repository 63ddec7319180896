//! An HTTP test app: scopegate's layer and router plus one route per guard.

use axum::{
    body::Body,
    http::{header, HeaderMap, Method, Request, StatusCode},
    response::Response,
    routing::{any, get},
    Json, Router,
};
use scopegate::{
    extract::guard, store::SledStore, AnonymousSessions, AuthState, CurrentUser, NewToken,
    Principal, RequireAdmin, RequireAnyScope, RequireScope, RequireScopeStrict, Scope, ScopeGate,
    ScopeGateBuilder, UserId,
};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::{girder_scopes, Fixture, Users};

scopegate::scopes! {
    pub struct DataRead = "core.data.read";
    pub struct DataWrite = "core.data.write";
    pub struct SettingRead = "core.setting.read";
}

pub const DATA_READ: Scope = DataRead::SCOPE;
pub const DATA_WRITE: Scope = DataWrite::SCOPE;
pub const SETTING_READ: Scope = SettingRead::SCOPE;

/// A fixture over a cached sled store, its auth state, and the test router.
pub struct TestApp {
    pub fixture: Fixture<SledStore>,
    pub state: AuthState,
    pub router: Router,
}

fn open(path: &std::path::Path) -> SledStore {
    SledStore::open(path).unwrap()
}

impl TestApp {
    pub fn new() -> Self {
        Self::with_state(|state| state)
    }

    /// An app whose router hands out anonymous sessions within `sessions`.
    pub fn with_anonymous_sessions(sessions: AnonymousSessions) -> Self {
        Self::with_state(|state| state.with_anonymous_sessions(sessions).unwrap())
    }

    /// An app that accepts API keys as credentials.
    pub fn with_direct_api_keys() -> Self {
        Self::assemble(Fixture::cached_with_direct_api_keys(open), |state| state)
    }

    /// An app that accepts API keys as credentials, its gate further configured.
    pub fn with_gate(configure: impl FnOnce(ScopeGateBuilder) -> ScopeGateBuilder) -> Self {
        Self::assemble(Fixture::cached_configured(open, configure), |state| state)
    }

    fn with_state(configure: impl FnOnce(AuthState) -> AuthState) -> Self {
        Self::assemble(Fixture::cached(open), configure)
    }

    fn assemble(
        fixture: Fixture<SledStore>,
        configure: impl FnOnce(AuthState) -> AuthState,
    ) -> Self {
        let state = configure(AuthState::new(fixture.gate.clone()));
        let router = routes(state.clone());
        Self {
            fixture,
            state,
            router,
        }
    }

    /// A full session of `user`.
    pub async fn session(&self, user: &UserId) -> String {
        self.token(NewToken::for_user(user.clone())).await
    }

    /// A token of `user` carrying only `scopes`.
    pub async fn scoped(&self, user: &UserId, scopes: &[Scope]) -> String {
        self.token(NewToken::for_user(user.clone()).scopes(scopes.iter().cloned()))
            .await
    }

    pub async fn token(&self, new: NewToken) -> String {
        let issued = self.fixture.gate.create_token(new).await.unwrap();
        issued.secret.expose().to_owned()
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        send(&self.router, request).await
    }

    /// Creates a key through the router with `session`; its document, `key`
    /// (the secret) included.
    pub async fn create_key(&self, session: &str, body: Value) -> Value {
        let reply = self
            .send(request(Method::POST, "/api_key", Some(session), Some(body)))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        reply.body
    }

    /// `POST /api_key/token` with `body`.
    pub async fn exchange(&self, body: Value) -> Reply {
        self.send(request(Method::POST, "/api_key/token", None, Some(body)))
            .await
    }
}

/// An app over a sled store in `dir` reading tokens from `Girder-Token`, a
/// `token` cookie and a `token` query parameter too, with anonymous sessions on
/// (realm `files`): [`routes`], and `/anything`, which answers any method and is
/// guarded by nothing but the credential itself.
pub fn app_with_all_sources(dir: &std::path::Path, users: Users) -> (Router, AuthState) {
    let state = AuthState::builder(
        ScopeGate::builder(SledStore::open(dir).unwrap(), users).with_registry(girder_scopes()),
    )
    .with_realm("files")
    .with_token_header("Girder-Token")
    .with_token_cookie("token")
    .with_token_query("token")
    .with_anonymous_sessions(AnonymousSessions::default())
    .build()
    .unwrap();
    let anything = Router::new()
        .route(
            "/anything",
            any(|principal: Option<Principal>| async move { format!("{}", principal.is_some()) }),
        )
        .layer(state.layer());
    (routes(state.clone()).merge(anything), state)
}

/// [`app_with_all_sources`] over a fresh store, with user `bob` and a full
/// session of his.
pub struct AllSources {
    pub router: Router,
    pub state: AuthState,
    pub bob: UserId,
    /// The session's secret.
    pub session: String,
    _dir: tempfile::TempDir,
}

impl AllSources {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::default();
        let bob = users.add("bob", false);
        let (router, state) = app_with_all_sources(dir.path(), users);
        let session = state
            .gate()
            .create_token(NewToken::for_user(bob.clone()))
            .await
            .unwrap();
        Self {
            router,
            state,
            bob,
            session: session.secret.expose().to_owned(),
            _dir: dir,
        }
    }
}

/// The guarded routes of a typical app, plus scopegate's router.
pub fn routes(state: AuthState) -> Router {
    let guarded_by_layer = Router::new()
        .route(
            "/guarded/whoami",
            get(|user: CurrentUser| async move { Json(json!({ "user": user.id() })) }),
        )
        .route_layer(guard::<RequireScope<DataWrite>>());
    Router::new()
        .merge(scopegate::router())
        .merge(guarded_by_layer)
        .route(
            "/public",
            get(|p: Option<Principal>| async move {
                Json(json!({ "user": p.and_then(|p| p.user_id().cloned()) }))
            }),
        )
        .route(
            "/user",
            get(|user: CurrentUser| async move { Json(json!({ "user": user.id() })) }),
        )
        .route("/data", get(|_: RequireScope<DataRead>| async { "data" }))
        .route(
            "/data_any",
            get(|_: RequireAnyScope<(DataRead, DataWrite)>| async { "data" }),
        )
        .route(
            "/data_rw",
            get(|_: RequireScope<(DataRead, DataWrite)>| async { "data" }),
        )
        .route(
            "/strict",
            get(|_: RequireScopeStrict<DataRead>| async { "strict" }),
        )
        .route("/admin", get(|_: RequireAdmin| async { "admin" }))
        .route(
            "/settings",
            get(|_: RequireAdmin<SettingRead>| async { "settings" }),
        )
        .layer(state.layer())
        .with_state(state)
}

/// A response, its body parsed as JSON (or a string when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub response_extensions: http::Extensions,
}

impl Reply {
    /// The `error` code of an error body.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    pub fn challenge(&self) -> &str {
        self.headers
            .get(header::WWW_AUTHENTICATE)
            .map_or("", |v| v.to_str().unwrap())
    }
}

pub async fn send(router: &Router, request: Request<Body>) -> Reply {
    let response: Response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
        response_extensions: parts.extensions,
    }
}

/// A request with an optional bearer token and an optional JSON body.
pub fn request(
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

pub fn get_with(uri: &str, token: Option<&str>) -> Request<Body> {
    request(Method::GET, uri, token, None)
}
