// The crate's front page is the README: the drop-in example, the guards, the
// errors, the routes, storage; its Rust examples compile as doctests.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod api_key;
pub mod clock;
mod config_error;
mod credential;
mod error;
#[cfg(feature = "axum")]
pub mod extract;
mod fast_hash;
mod gate;
mod ids;
#[cfg(feature = "axum")]
pub mod middleware;
mod principal;
#[cfg(feature = "axum")]
pub mod rejection;
#[cfg(feature = "router")]
pub mod router;
mod scope;
mod scope_set;
mod scopes;
pub mod secret;
pub mod store;
mod sweeper;
mod token;
mod user;

// The root holds what an app uses: the layer and its state, the extractors,
// scopes, users, the gate and its records, the errors. Store implementors find
// theirs under `store` and `secret`; the middleware's service, the rest of the
// routes and guards, and the clocks have modules of their own.
pub use crate::{
    api_key::{ApiKey, ApiKeyUpdate, IssuedApiKey, NewApiKey},
    config_error::ConfigError,
    credential::Credential,
    error::{Error, InvalidTokenReason},
    gate::{NewToken, ScopeGate, ScopeGateBuilder, TokenRequest},
    ids::{ApiKeyId, TokenId, UserId},
    principal::Principal,
    scope::{InvalidScopes, Scope, ScopeError, ScopeInfo, ScopeRegistry},
    scope_set::ScopeSet,
    scopes::Scopes,
    secret::Secret,
    sweeper::Sweeper,
    token::{IssuedToken, MissingScopes, Token},
    user::{AuthUser, BoxError, LoadedUser, UserLoader},
};

// The Tower layer and the extractors (feature `axum`).
#[cfg(feature = "axum")]
pub use crate::{
    extract::{CurrentUser, RequireAdmin, RequireAnyScope, RequireScope, RequireScopeStrict},
    middleware::{AnonymousSessions, AuthLayer, AuthState, AuthStateBuilder, Authentication},
    rejection::AuthRejection,
};

// The API-key and token routes (feature `router`).
#[cfg(feature = "router")]
pub use crate::router::router;
