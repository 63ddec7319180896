//! The smallest app that issues its own tokens: a login route, one guarded route,
//! served with `axum::serve`.
//!
//! ```text
//! cargo run --example minimal
//! TOKEN=$(curl -s -X POST 127.0.0.1:3001/login -H 'content-type: application/json' \
//!     -d '{"user": "bob", "password": "bob-pass"}' | jq -r .token)
//! curl -i -H "Authorization: Bearer $TOKEN" 127.0.0.1:3001/data   # 200
//! curl -i 127.0.0.1:3001/data                                      # 401
//! ```
//!
//! `SCOPEGATE_ADDR` and `SCOPEGATE_DATA` override the address and the data
//! directory (`./scopegate-minimal-data`).

use axum::{
    extract::{FromRef, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use scopegate::{
    store::SledStore, AuthState, AuthUser, BoxError, NewToken, RequireScope, ScopeGate,
    ScopeRegistry, UserId, UserLoader,
};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

/// Your user type: scopegate only asks whether it is an administrator.
struct User {
    admin: bool,
}

impl AuthUser for User {
    fn is_admin(&self) -> bool {
        self.admin
    }
}

/// Loads users by id; here one user, in your app your user table.
struct Users;

impl UserLoader for Users {
    type User = User;

    async fn load_user(&self, id: &UserId) -> Result<Option<User>, BoxError> {
        Ok((id.as_str() == "bob").then_some(User { admin: false }))
    }
}

scopegate::scopes! {
    /// Every scope of the app: the registry is made from it.
    pub set AppScopes;
    /// Read data.
    pub struct DataRead = "core.data.read" { name: "Read data", description: "Read any data you can see." };
}

#[derive(Clone)]
struct AppState {
    auth: AuthState,
}

// Without this, `.with_state(AppState { .. })` on a router guarded by scopegate
// fails with "the trait bound `Router<AppState>: From<Router<AuthState>>` is not
// satisfied": the extractors find the `AuthState` in your state through it.
impl FromRef<AppState> for AuthState {
    fn from_ref(state: &AppState) -> AuthState {
        state.auth.clone()
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

/// `POST /login`: a full-session token for a user whose password checks out.
/// Check against your own store of password hashes; this compares one demo
/// password, in constant time.
async fn login(State(state): State<AppState>, Json(login): Json<Login>) -> Response {
    let known = login.user == "bob" && bool::from(login.password.as_bytes().ct_eq(b"bob-pass"));
    if !known {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let user = UserId::from(login.user);
    match state
        .auth
        .gate()
        .create_token(NewToken::for_user(user))
        .await
    {
        Ok(issued) => Json(json!({
            "token": issued.secret.expose(),
            "expires": issued.token.expires,
        }))
        .into_response(),
        // A store that cannot write answers 503, never a token.
        Err(err) => err.into_response(),
    }
}

/// `GET /data`: needs `core.data.read` (a full session has every scope).
async fn data(who: RequireScope<DataRead>) -> String {
    format!(
        "data for {}\n",
        who.user_id().map_or("nobody", UserId::as_str)
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var_os("SCOPEGATE_DATA").unwrap_or_else(|| "scopegate-minimal-data".into());
    let addr = std::env::var("SCOPEGATE_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let auth = AuthState::builder(
        ScopeGate::builder(SledStore::open(dir)?, Users)
            .with_registry(ScopeRegistry::of::<AppScopes>()?),
    )
    .build()?;
    let app = Router::new()
        .route("/login", post(login))
        .route("/data", get(data))
        .layer(auth.layer())
        .with_state(AppState { auth });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
