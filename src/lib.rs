// The crate's front page is the README: the drop-in example, the guards, the
// errors, the routes, storage; its Rust examples compile as doctests.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod api_key;
mod auth;
mod clock;
mod error;
mod extract;
mod gate;
mod ids;
mod principal;
pub mod rejection;
mod router;
mod scope;
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

pub use crate::{
    api_key::{ApiKey, ApiKeyUpdate, IssuedApiKey, NewApiKey},
    auth::{
        AnonymousSessions, AuthLayer, AuthService, AuthState, AuthStateBuilder, Authentication,
        ResponseFuture, DEFAULT_REALM,
    },
    clock::{Clock, ManualClock, SystemClock},
    error::{ConfigError, Error, InvalidTokenReason},
    extract::{
        guard, CurrentUser, Guarded, RequireAdmin, RequireAnyScope, RequireScope,
        RequireScopeStrict, ScopeSet,
    },
    gate::{
        NewToken, ScopeGate, ScopeGateBuilder, TokenRequest, DEFAULT_TOKEN_LIFETIME_DAYS, MIN_DAYS,
    },
    ids::{ApiKeyId, TokenId, UserId},
    principal::Principal,
    rejection::AuthRejection,
    router::{api_key_router, router, session_router, token_router, AuthTokenResponse},
    scope::{InvalidScopes, Scope, ScopeError, ScopeInfo, ScopeRegistry},
    secret::Secret,
    store::{
        error_chain, CacheConfig, CacheStats, CachingStore, Page, SledStore, StoreError,
        StoreErrorKind, StoreHealth, TokenStore,
    },
    sweeper::Sweeper,
    token::{has_scope, IssuedToken, MissingScopes, Token},
    user::{AuthUser, BoxError, LoadedUser, UserLoader},
};
