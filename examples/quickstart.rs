//! scopegate's quickstart: a small API whose routes each demand their scopes.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Listens on `127.0.0.1:3000` (`SCOPEGATE_ADDR` overrides) with its sled data in
//! `./scopegate-data` (`SCOPEGATE_DATA` overrides). With `SCOPEGATE_DATABASE_URL`
//! set (and `--features postgres`) its tokens and keys live in PostgreSQL instead,
//! so several quickstarts on different addresses are replicas of one app. Demo users: `alice` / `alice-pass`
//! (admin) and `bob` / `bob-pass`. Routes:
//!
//! - the scopegate router at `/` (`/api_key…`, `/token…`);
//! - `POST /login`: HTTP Basic → `{user: {id}, auth_token: {…}}`, a full session;
//! - `GET /health`: public; 503 while the token store is failing;
//! - `GET /openapi.json`: the OpenAPI 3.1 description of scopegate's routes;
//! - `GET /me`: the current user;
//! - `GET /data`: `core.data.read`; `POST /data`: `core.data.write`;
//! - `GET /admin/settings`: an admin, with `core.setting.read`.
//!
//! Anonymous sessions (`GET /token/session` without a token) are on. `RUST_LOG`
//! sets the log filter (default `info`); Ctrl-C and SIGTERM shut it down gracefully.

use std::{
    error::Error,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{FromRef, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use scopegate::{
    router::AuthTokenResponse,
    store::{error_chain, SledStore, StoreHealth},
    AnonymousSessions, AuthState, AuthUser, BoxError, CurrentUser, NewToken, RequireAdmin,
    RequireScope, ScopeGate, ScopeRegistry, UserId, UserLoader,
};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

// The app's scopes, declared once: the guards name the markers, and the registry
// (what keys may carry, what `GET /token/scopes` lists) is built from their set,
// so every scope a guard names is registered.
scopegate::scopes! {
    /// Girder's scope catalogue.
    set GirderScopes;
    struct UserInfoRead = "core.user_info.read" {
        name: "Read your user information",
        description: "Read your name, email and groups.",
    };
    /// Read data.
    struct DataRead = "core.data.read" {
        name: "Read data",
        description: "Read any data you can see.",
    };
    /// Write data.
    struct DataWrite = "core.data.write" {
        name: "Write data",
        description: "Create and change data you can write.",
    };
    struct DataOwn = "core.data.own" {
        name: "Data ownership",
        description: "Delete data and change its permissions.",
    };
    /// Read system settings (admin-only).
    struct SettingRead = "core.setting.read" {
        name: "Read settings",
        description: "Read system settings.",
        admin: true,
    };
    struct PluginsRead = "core.plugins.read" {
        name: "See installed plugins",
        description: "List installed plugins.",
        admin: true,
    };
}

/// The app's own user type.
#[derive(Debug, Clone)]
struct User {
    name: &'static str,
    password: &'static str,
    admin: bool,
}

impl AuthUser for User {
    fn is_admin(&self) -> bool {
        self.admin
    }
}

const DEMO_USERS: [User; 2] = [
    User {
        name: "alice",
        password: "alice-pass",
        admin: true,
    },
    User {
        name: "bob",
        password: "bob-pass",
        admin: false,
    },
];

fn demo_user(name: &str) -> Option<User> {
    DEMO_USERS.iter().find(|u| u.name == name).cloned()
}

/// The app's user table; a real app would query its database here.
struct Users;

impl UserLoader for Users {
    type User = User;

    async fn load_user(&self, id: &UserId) -> Result<Option<User>, BoxError> {
        Ok(demo_user(id.as_str()))
    }

    // The demo users are in memory: requests need not await them.
    fn load_user_now(&self, id: &UserId) -> Option<Result<Option<User>, BoxError>> {
        Some(Ok(demo_user(id.as_str())))
    }
}

/// Girder's scope catalogue.
fn girder_scopes() -> Result<ScopeRegistry, scopegate::ScopeError> {
    ScopeRegistry::of::<GirderScopes>()
}

/// scopegate over a sled database in `data`, with a moka cache in front.
pub(crate) fn auth_state(data: &Path) -> Result<AuthState, Box<dyn Error>> {
    let store = SledStore::open(data).map_err(|err| {
        format!(
            "cannot open the sled database in {}: {}",
            data.display(),
            error_chain(&err)
        )
    })?;
    state_over(store)
}

/// scopegate over PostgreSQL at `url`; the cache in front drops what any replica
/// revokes.
#[cfg(feature = "postgres")]
async fn postgres_auth_state(url: &str) -> Result<AuthState, Box<dyn Error>> {
    let store = scopegate::store::PgStore::connect(url)
        .await
        .map_err(|err| {
            format!(
                "cannot use the PostgreSQL database in SCOPEGATE_DATABASE_URL: {}",
                error_chain(&err)
            )
        })?;
    state_over(store)
}

#[cfg(not(feature = "postgres"))]
async fn postgres_auth_state(_: &str) -> Result<AuthState, Box<dyn Error>> {
    Err(
        "SCOPEGATE_DATABASE_URL is set, but this build has no PostgreSQL support: \
         run `cargo run --features postgres --example quickstart`"
            .into(),
    )
}

fn state_over(store: impl scopegate::store::TokenStore) -> Result<AuthState, Box<dyn Error>> {
    Ok(
        AuthState::builder(ScopeGate::builder(store, Users).with_registry(girder_scopes()?))
            .with_realm("scopegate quickstart")
            .with_anonymous_sessions(AnonymousSessions::default())
            .build()?,
    )
}

#[derive(Clone)]
struct AppState {
    auth: AuthState,
    items: Arc<Mutex<Vec<String>>>,
}

impl FromRef<AppState> for AuthState {
    fn from_ref(state: &AppState) -> AuthState {
        state.auth.clone()
    }
}

/// The whole app, apart from `main` so tests can drive it.
pub(crate) fn app(auth: AuthState) -> Router {
    let state = AppState {
        auth: auth.clone(),
        items: Arc::new(Mutex::new(vec!["the first item".to_owned()])),
    };
    Router::new()
        .merge(scopegate::router())
        .route("/login", post(login))
        .route("/health", get(health))
        // The OpenAPI 3.1 description of scopegate's routes.
        .route(
            "/openapi.json",
            get(|| async { Json(scopegate::router::openapi()) }),
        )
        .route("/me", get(me))
        .route("/data", get(list_data).post(add_data))
        .route("/admin/settings", get(settings))
        .layer(auth.layer())
        .with_state(state)
}

/// `GET /health`: 200 while the token store serves, 503 while it is failing (so a
/// load balancer stops sending traffic here until it recovers by itself).
async fn health(State(state): State<AppState>) -> Response {
    match state.auth.gate().health().await {
        StoreHealth::Healthy => Json(json!({ "status": "ok" })).into_response(),
        StoreHealth::Failing { since, error } => {
            let body = json!({
                "status": "failing",
                "since": since,
                "error": error_chain(&error),
            });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unknown" })),
        )
            .into_response(),
    }
}

/// `POST /login`: HTTP Basic credentials for a full-session token.
async fn login(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(user) = basic_credentials(&headers).and_then(|(name, password)| {
        let user = demo_user(&name)?;
        bool::from(user.password.as_bytes().ct_eq(password.as_bytes())).then_some(user)
    }) else {
        let body = json!({
            "error": "unauthorized",
            "message": "Send HTTP Basic credentials of a demo user (alice/alice-pass, bob/bob-pass).",
        });
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"scopegate quickstart\"",
            )],
            Json(body),
        )
            .into_response();
    };
    let id = UserId::from(user.name);
    match state
        .auth
        .gate()
        .create_token(NewToken::for_user(id.clone()))
        .await
    {
        Ok(token) => AuthTokenResponse::new(id, token).into_response(),
        Err(err) => err.into_response(),
    }
}

/// The user name and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (name, password) = decoded.split_once(':')?;
    Some((name.to_owned(), password.to_owned()))
}

/// `GET /me`: needs a full session.
async fn me(user: CurrentUser) -> Json<Value> {
    let name = user.get::<User>().name;
    Json(json!({ "id": user.id(), "name": name, "admin": user.is_admin() }))
}

/// `GET /data`: needs `core.data.read` (or a full session).
async fn list_data(_: RequireScope<DataRead>, State(state): State<AppState>) -> Json<Vec<String>> {
    Json(state.items.lock().expect("items lock").clone())
}

#[derive(Deserialize)]
struct NewItem {
    item: String,
}

/// `POST /data`: needs `core.data.write` (or a full session).
async fn add_data(
    _: RequireScope<DataWrite>,
    State(state): State<AppState>,
    Json(new): Json<NewItem>,
) -> (StatusCode, Json<Value>) {
    state
        .items
        .lock()
        .expect("items lock")
        .push(new.item.clone());
    (StatusCode::CREATED, Json(json!({ "item": new.item })))
}

/// `GET /admin/settings`: an admin, in a full session or with `core.setting.read`.
async fn settings(_: RequireAdmin<SettingRead>) -> Json<Value> {
    Json(json!({ "core.registration_policy": "closed", "core.token_lifetime_days": 1 }))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The whole chain: "cannot open …: token store backend failed: <the OS's reason>".
            eprintln!("quickstart: {}", error_chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), Box<dyn Error>> {
    let data = std::env::var_os("SCOPEGATE_DATA")
        .map_or_else(|| PathBuf::from("scopegate-data"), PathBuf::from);
    let addr: SocketAddr = std::env::var("SCOPEGATE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|err| format!("SCOPEGATE_ADDR must be host:port, like 127.0.0.1:3000: {err}"))?;
    let database_url = std::env::var("SCOPEGATE_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let (auth, stored_in) = match &database_url {
        Some(url) => (postgres_auth_state(url).await?, "PostgreSQL".to_owned()),
        None => (auth_state(&data)?, data.display().to_string()),
    };
    let sweeper = auth.gate().spawn_sweeper(Duration::from_secs(60));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|err| {
        format!("cannot listen on {addr} ({err}); set SCOPEGATE_ADDR to another address")
    })?;
    let addr = listener.local_addr()?;
    print_welcome(addr, &stored_in);
    axum::serve(listener, app(auth))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("shut down gracefully");
    sweeper.shutdown().await;
    Ok(())
}

/// Ctrl-C, or SIGTERM (what `kill`, systemd and container runtimes send): requests
/// in flight finish before the process exits.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}

fn print_welcome(addr: SocketAddr, stored_in: &str) {
    let url = format!("http://{addr}");
    let field = |name: &str| format!("sed -E 's/.*\"{name}\":\"([^\"]*)\".*/\\1/'");
    println!("scopegate quickstart listening on {url} (data in {stored_in})");
    println!("demo users: alice / alice-pass (admin), bob / bob-pass");
    println!();
    println!("# log in as bob (a full session) and look around");
    println!(
        "TOKEN=$(curl -s -X POST -u bob:bob-pass {url}/login | {})",
        field("token")
    );
    // `-w` prints the status after the body, so each line shows what it got.
    let status = "-w '\\n%{http_code}\\n'";
    println!("curl -s {status} -H \"Authorization: Bearer $TOKEN\" {url}/me");
    println!("# create an API key that may only read data (the secret is shown once)");
    println!(
        "KEY=$(curl -s -X POST -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' \
         -d '{{\"name\":\"reader\",\"scope\":[\"core.data.read\"]}}' {url}/api_key | {})",
        field("key")
    );
    println!("# exchange it for a short-lived token");
    println!(
        "READER=$(curl -s -X POST -H 'Content-Type: application/json' -d \"{{\\\"key\\\":\\\"$KEY\\\"}}\" \
         {url}/api_key/token | {})",
        field("token")
    );
    println!("curl -s {status} -H \"Authorization: Bearer $READER\" {url}/data   # 200");
    println!(
        "curl -s {status} -X POST -H \"Authorization: Bearer $READER\" -H 'Content-Type: application/json' \
         -d '{{\"item\":\"x\"}}' {url}/data   # 403 insufficient_scope"
    );
    println!("curl -s {status} {url}/me   # 401 without a token");
    println!("curl -s {status} {url}/token/scopes");
    println!();
    println!("Ctrl-C or SIGTERM stops the server; RUST_LOG=debug shows more.");
}
