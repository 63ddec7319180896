//! [`AuthState`]: the gate plus the HTTP settings, shared by the layer and the router.

use std::{fmt, sync::Arc};

use axum::extract::FromRef;
use http::HeaderName;

use super::{
    context::Context, credentials::TokenSources, AnonymousLimiter, AnonymousSessions, AuthLayer,
};
use crate::{
    config_error::ConfigError,
    gate::{ScopeGate, ScopeGateBuilder},
};

/// What the [`AuthLayer`] and [`router`](crate::router()) share: the [`ScopeGate`],
/// the realm, and where tokens are read from. Cheap to clone (one `Arc`).
///
/// Put it in the app's state (`AuthState: FromRef<AppState>`) to serve the router,
/// and hand it to [`AuthLayer::new`].
///
/// # "`Router<AppState>: From<Router<AuthState>>` is not satisfied"
///
/// That is axum's error for an app state without `FromRef` to `AuthState`: the
/// extractors and [`router`](crate::router()) read the `AuthState` from the
/// app's state through it. Implement it:
///
/// ```
/// # use scopegate::AuthState;
/// #[derive(Clone)]
/// struct AppState {
///     auth: AuthState,
/// }
///
/// impl axum::extract::FromRef<AppState> for AuthState {
///     fn from_ref(state: &AppState) -> AuthState {
///         state.auth.clone()
///     }
/// }
/// ```
#[derive(Clone)]
pub struct AuthState {
    inner: Arc<Inner>,
}

struct Inner {
    gate: ScopeGate,
    /// Holds, among what refusals say, where credentials are read from.
    context: Arc<Context>,
    anonymous: Option<AnonymousLimiter>,
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthState")
            .field("gate", &self.inner.gate)
            .field("realm", &self.inner.context.realm)
            .field("sources", &self.inner.context.sources)
            .field(
                "anonymous_sessions",
                &self.inner.anonymous.as_ref().map(AnonymousLimiter::config),
            )
            .finish()
    }
}

impl AuthState {
    /// The realm of `WWW-Authenticate` challenges unless configured.
    pub const DEFAULT_REALM: &'static str = "scopegate";

    /// Configures a state over the gate `gate` configures: the gate's settings
    /// (store, users, scopes, cache, lifetimes) are set on its
    /// [`ScopeGateBuilder`], the HTTP ones (realm, where tokens are read from,
    /// anonymous sessions) here.
    ///
    /// ```
    /// # use scopegate::{AuthState, AuthUser, BoxError, ScopeGate, UserId, UserLoader};
    /// # struct User;
    /// # impl AuthUser for User { fn is_admin(&self) -> bool { false } }
    /// # struct Users;
    /// # impl UserLoader for Users {
    /// #     type User = User;
    /// #     async fn load_user(&self, _: &UserId) -> Result<Option<User>, BoxError> { Ok(None) }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = scopegate::store::SledStore::open(dir.path())?;
    /// let auth = AuthState::builder(ScopeGate::builder(store, Users).with_pepper(*b"0123456789abcdef"))
    ///     .with_realm("example")
    ///     .build()?;
    /// # let _ = auth; Ok(()) }
    /// ```
    pub fn builder(gate: ScopeGateBuilder) -> AuthStateBuilder {
        AuthStateBuilder {
            gate,
            realm: Self::DEFAULT_REALM.to_owned(),
            header: None,
            cookie: None,
            query: None,
            anonymous: None,
        }
    }

    /// A state over a gate built by hand: realm [`AuthState::DEFAULT_REALM`], tokens read only
    /// from `Authorization: Bearer`.
    pub fn new(gate: ScopeGate) -> Self {
        Self {
            inner: Arc::new(Inner {
                context: Arc::new(Context::new(
                    Self::DEFAULT_REALM,
                    gate.shared_registry(),
                    TokenSources::default(),
                )),
                gate,
                anonymous: None,
            }),
        }
    }

    /// This state with anonymous sessions on, for a state made with
    /// [`AuthState::new`]; see [`AuthStateBuilder::with_anonymous_sessions`].
    pub fn with_anonymous_sessions(self, sessions: AnonymousSessions) -> Result<Self, ConfigError> {
        let limiter = AnonymousLimiter::new(sessions.validate()?);
        Ok(Self {
            inner: Arc::new(Inner {
                gate: self.inner.gate.clone(),
                context: self.inner.context.clone(),
                anonymous: Some(limiter),
            }),
        })
    }

    /// The gate: issue, check and revoke tokens and keys from the app's own code.
    pub fn gate(&self) -> &ScopeGate {
        &self.inner.gate
    }

    /// The realm of `WWW-Authenticate` challenges.
    pub fn realm(&self) -> &str {
        &self.inner.context.realm
    }

    /// The 401 for a request without credentials, naming where they are read from.
    #[cfg(feature = "router")] // used by the router
    pub(crate) fn missing_credentials(&self) -> crate::rejection::AuthRejection {
        self.inner.context.missing_credentials()
    }

    /// The anonymous-session window, if anonymous sessions are on.
    #[cfg(feature = "router")] // used by the router
    pub(crate) fn anonymous_sessions(&self) -> Option<&AnonymousLimiter> {
        self.inner.anonymous.as_ref()
    }

    /// The layer that authenticates requests with this state.
    pub fn layer(&self) -> AuthLayer {
        AuthLayer::new(self.clone())
    }

    /// What every authentication of this state shares.
    pub(super) fn context(&self) -> &Arc<Context> {
        &self.inner.context
    }
}

impl FromRef<AuthState> for ScopeGate {
    fn from_ref(state: &AuthState) -> Self {
        state.gate().clone()
    }
}

/// Configures an [`AuthState`]: the HTTP settings, around the
/// [`ScopeGateBuilder`] of its gate. Invalid settings fail at
/// [`AuthStateBuilder::build`].
#[must_use]
pub struct AuthStateBuilder {
    gate: ScopeGateBuilder,
    realm: String,
    header: Option<String>,
    cookie: Option<String>,
    query: Option<String>,
    anonymous: Option<AnonymousSessions>,
}

impl fmt::Debug for AuthStateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthStateBuilder")
            .field("gate", &self.gate)
            .field("realm", &self.realm)
            .field("header", &self.header)
            .field("cookie", &self.cookie)
            .field("query", &self.query)
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl AuthStateBuilder {
    /// The realm of `WWW-Authenticate` challenges (default [`AuthState::DEFAULT_REALM`]).
    pub fn with_realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Also read tokens from this header, e.g. `X-Api-Token` (off by default).
    pub fn with_token_header(mut self, name: impl Into<String>) -> Self {
        self.header = Some(name.into());
        self
    }

    /// Also read tokens from this cookie (off by default).
    ///
    /// # Warning
    /// Browsers send cookies on cross-site requests: protect state-changing routes
    /// against CSRF (the router's JSON routes demand `Content-Type: application/json`,
    /// which a plain HTML form cannot send).
    pub fn with_token_cookie(mut self, name: impl Into<String>) -> Self {
        self.cookie = Some(name.into());
        self
    }

    /// Also read tokens from this query parameter (off by default).
    ///
    /// # Warning
    /// URLs end up in server logs, proxies, browser history and `Referer` headers, so
    /// a token in a URL leaks. Use it only for links that cannot send headers, with
    /// short-lived, narrowly scoped tokens.
    pub fn with_token_query(mut self, name: impl Into<String>) -> Self {
        self.query = Some(name.into());
        self
    }

    /// Lets `GET /token/session` create anonymous tokens for callers without one,
    /// within `sessions`' bounds (off by default: the route answers 401).
    pub fn with_anonymous_sessions(mut self, sessions: AnonymousSessions) -> Self {
        self.anonymous = Some(sessions);
        self
    }

    /// Checks the settings and builds the state.
    pub fn build(self) -> Result<AuthState, ConfigError> {
        if !is_quotable(&self.realm) {
            return Err(ConfigError::InvalidRealm);
        }
        let sources = TokenSources {
            header: self.header.map(header_name).transpose()?,
            cookie: self.cookie.map(parameter_name).transpose()?,
            query: self.query.map(parameter_name).transpose()?,
        };
        let anonymous = self
            .anonymous
            .map(|sessions| sessions.validate().map(AnonymousLimiter::new))
            .transpose()?;
        let gate = self.gate.build()?;
        Ok(AuthState {
            inner: Arc::new(Inner {
                context: Arc::new(Context::new(&self.realm, gate.shared_registry(), sources)),
                gate,
                anonymous,
            }),
        })
    }
}

fn is_quotable(realm: &str) -> bool {
    (1..=100).contains(&realm.len())
        && realm
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

fn header_name(name: String) -> Result<HeaderName, ConfigError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| ConfigError::InvalidSourceName(name))
}

/// Cookie and query parameter names: letters, digits, `-`, `_` and `.`.
fn parameter_name(name: String) -> Result<String, ConfigError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(name)
    } else {
        Err(ConfigError::InvalidSourceName(name))
    }
}
