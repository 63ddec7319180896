//! Token and API-key authentication for Tower and Axum services.
//!
//! scopegate issues short-lived bearer **tokens** and long-lived, named, scoped
//! **API keys**, stores them in **sled** behind a **moka** cache, and checks
//! **scopes** from a registry the app declares. It follows the model of the Girder
//! data platform (key → token exchange with a capped duration, admin-only scopes,
//! revocation by deactivation) and fixes what Girder got wrong:
//!
//! - secrets are `{prefix}_{kind}_{body}{check}` strings of ≥ 256 CSPRNG bits, checked
//!   by CRC32 before any store access, stored only as SHA-256 digests (optionally
//!   peppered), compared in constant time, and printed as `[redacted]`;
//! - expiry is enforced on every read, not only by a cleanup job;
//! - revocation is immediate, even for cached tokens, and durable before it returns.
//!
//! For an HTTP app, build an [`AuthState`] over a [`SledStore`] and the app's
//! [`UserLoader`], wrap the router in its [`AuthLayer`], guard routes with the
//! extractors ([`RequireScope`], [`RequireAnyScope`], [`RequireScopeStrict`],
//! [`RequireAdmin`], [`CurrentUser`], [`Principal`]) and merge [`router()`] for the
//! API-key and token routes; failures answer as in [`rejection`]. The
//! [`ScopeGate`] behind it (`state.gate()`) issues and revokes credentials from the
//! app's own code, and works without HTTP too.

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
mod secret;
pub mod store;
mod sweeper;
mod token;
mod user;

pub use async_trait::async_trait;

#[cfg(feature = "postgres")]
pub use crate::store::{PgConfig, PgStore};

pub use crate::{
    api_key::{ApiKey, ApiKeyUpdate, IssuedApiKey, KeyChange, NewApiKey, RetiredSecret, TokenFate},
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
    secret::{MalformedSecret, Secret, SecretCodec, SecretDigest, SecretKind},
    store::{
        error_chain, CacheConfig, CacheStats, CachingStore, Page, SledStore, StoreError,
        StoreErrorKind, StoreHealth, TokenStore,
    },
    sweeper::Sweeper,
    token::{has_scope, IssuedToken, MissingScopes, Token},
    user::{AuthUser, BoxError, LoadedUser, UserLoader},
};

/// Compiles the README's example as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
