// The crate's front page is the README: the drop-in example, the guards, the
// errors, the routes, storage; its Rust examples compile as doctests.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod api_key;
#[cfg(feature = "axum")]
mod auth;
mod clock;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod fast_hash;
mod gate;
mod ids;
mod principal;
#[cfg(feature = "axum")]
pub mod rejection;
#[cfg(feature = "router")]
mod router;
mod scope;
mod scope_set;
mod scopes;
pub mod secret;
pub mod store;
mod sweeper;
mod token;
mod user;

pub use async_trait::async_trait;

#[cfg(feature = "postgres")]
pub use crate::store::{PgConfig, PgStore};

// Types for store implementors are public under `store` and `secret`, not at the
// root, which holds what an app uses; the crate's own code still names KeyChange from here.
pub(crate) use crate::api_key::KeyChange;

// The core: the gate, its records and stores, with no HTTP in them.
pub use crate::{
    api_key::{ApiKey, ApiKeyUpdate, IssuedApiKey, NewApiKey},
    clock::{Clock, ManualClock, SystemClock},
    error::{ConfigError, Error, InvalidTokenReason},
    gate::{
        NewToken, ScopeGate, ScopeGateBuilder, TokenRequest, DEFAULT_LAST_USE_INTERVAL,
        DEFAULT_MAX_TOKENS_PER_KEY, DEFAULT_TOKEN_LIFETIME, MAX_LIFETIME, MIN_LIFETIME,
    },
    ids::{ApiKeyId, TokenId, UserId},
    principal::{Credential, Principal},
    scope::{InvalidScopes, Scope, ScopeError, ScopeInfo, ScopeRegistry},
    scope_set::ScopeSet,
    scopes::Scopes,
    secret::Secret,
    store::{
        error_chain, CacheConfig, CacheStats, CachingStore, Page, StoreError, StoreErrorKind,
        StoreHealth, TokenStore, MAX_CACHE_LIFETIME,
    },
    sweeper::Sweeper,
    token::{has_scope, IssuedToken, MissingScopes, Token},
    user::{AuthUser, BoxError, LoadedUser, UserLoader},
};

#[cfg(feature = "sled")]
pub use crate::store::{SledConfig, SledStore};

// The Tower layer and the extractors (feature `axum`).
#[cfg(feature = "axum")]
pub use crate::{
    auth::{
        AnonymousSessions, AuthLayer, AuthService, AuthState, AuthStateBuilder, Authentication,
        ResponseFuture, DEFAULT_REALM,
    },
    extract::{
        guard, CurrentUser, Guarded, RequireAdmin, RequireAnyScope, RequireScope,
        RequireScopeStrict, RouteGuard,
    },
    rejection::AuthRejection,
};

// The API-key and token routes (feature `router`).
#[cfg(feature = "router")]
pub use crate::router::{
    api_key_router, openapi, router, session_router, token_router, AuthTokenResponse,
};
