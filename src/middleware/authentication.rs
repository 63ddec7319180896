//! [`Authentication`]: what the layer found, attached to every request it sees.

use std::{
    any::TypeId,
    cell::RefCell,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
};

use super::{credentials::TokenSources, registered::RegisteredSets};
use crate::{
    rejection::{
        AuthRejection, InsufficientScope, InvalidRequest, InvalidToken, MissingCredentials,
        TemporarilyUnavailable, UnregisteredScopes,
    },
    scope::join_scopes,
    Principal, Scope, ScopeRegistry,
};

/// The outcome of authentication, in the request extensions.
///
/// The layer never rejects a request: it records here whether the request carried no
/// credential, a live token, or a credential it refused (and why), and the
/// extractors decide per route.
#[derive(Debug, Clone)]
pub struct Authentication {
    context: Arc<Context>,
    outcome: Outcome,
}

/// What every refusal of one [`AuthState`](crate::AuthState) says: the realm of its
/// challenges, and where it reads credentials from.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// Unique to the state that made it, and shared by its per-thread copies.
    id: u64,
    pub(crate) realm: Arc<str>,
    pub(crate) registry: Arc<ScopeRegistry>,
    /// The guards' scope sets found in `registry`, which never changes once built:
    /// a guard looks its scopes up on its first request only.
    registered: RegisteredSets,
    /// The refusals a request without a live token gets, rendered once.
    missing: MissingCredentials,
    invalid_token: InvalidToken,
    api_key: InvalidToken,
    /// Where the state reads credentials from.
    pub(crate) sources: TokenSources,
}

impl Context {
    /// The context of a state in `realm` reading from `sources`, which it keeps.
    pub(crate) fn new(realm: &str, registry: Arc<ScopeRegistry>, sources: TokenSources) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let realm: Arc<str> = realm.into();
        let missing: Arc<str> = sources.missing_message().into();
        Self {
            id: NEXT_ID.fetch_add(1, Relaxed),
            missing: MissingCredentials::prerendered(realm.clone(), missing),
            invalid_token: InvalidToken::new(realm.clone()),
            api_key: InvalidToken::api_key(realm.clone()),
            realm,
            registry,
            registered: RegisteredSets::default(),
            sources,
        }
    }

    pub(crate) fn missing_credentials(&self) -> AuthRejection {
        self.missing.clone().into()
    }

    /// This thread's copy of `context`, made on the thread's first request.
    ///
    /// Every request's [`Authentication`] holds its context. Were that one `Arc`
    /// cloned by every worker, its count's cache line would move between cores
    /// on each request (about 45 ns a move on the 2-core benchmark machine); a
    /// copy per thread keeps each count in its own core's cache. A thread keeps
    /// copies for the last few states it served (an app may nest routers with
    /// states of their own), so a copy may outlive its state until then.
    pub(crate) fn local(context: &Arc<Context>) -> Arc<Context> {
        /// States whose copies one thread keeps.
        const KEPT: usize = 4;
        thread_local! {
            static LOCAL: RefCell<Vec<Arc<Context>>> = const { RefCell::new(Vec::new()) };
        }
        LOCAL
            .try_with(|local| {
                let mut local = local.try_borrow_mut().ok()?;
                if let Some(copy) = local.iter().find(|copy| copy.id == context.id) {
                    return Some(copy.clone());
                }
                if local.len() == KEPT {
                    local.remove(0);
                }
                let copy = Arc::new(Context::clone(context));
                local.push(copy.clone());
                Some(copy)
            })
            .ok()
            .flatten()
            // While the thread is being torn down: the shared one.
            .unwrap_or_else(|| context.clone())
    }
}

#[derive(Debug, Clone)]
enum Outcome {
    Missing,
    Authenticated(Principal),
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    Malformed(&'static str),
    InvalidToken,
    /// An API key where a token belongs.
    ApiKey,
    Unavailable,
}

impl Authentication {
    pub(crate) fn missing(context: Arc<Context>) -> Self {
        Self {
            context,
            outcome: Outcome::Missing,
        }
    }

    pub(crate) fn authenticated(context: Arc<Context>, principal: Principal) -> Self {
        Self {
            context,
            outcome: Outcome::Authenticated(principal),
        }
    }

    pub(crate) fn refused(context: Arc<Context>, refusal: Refusal) -> Self {
        Self {
            context,
            outcome: Outcome::Refused(refusal),
        }
    }

    /// The live token's principal, if the request carried one.
    pub fn principal(&self) -> Option<&Principal> {
        match &self.outcome {
            Outcome::Authenticated(principal) => Some(principal),
            _ => None,
        }
    }

    /// Whether the request carried no credential at all.
    pub fn is_missing(&self) -> bool {
        matches!(self.outcome, Outcome::Missing)
    }

    /// Why the request's credential was refused, if it was.
    pub fn rejection(&self) -> Option<AuthRejection> {
        match self.outcome {
            Outcome::Refused(refusal) => Some(self.refusal(refusal)),
            _ => None,
        }
    }

    /// Where the layer that made this reads credentials from.
    #[cfg(feature = "router")] // used by the router
    pub(crate) fn sources(&self) -> &TokenSources {
        &self.context.sources
    }

    /// The realm of the `WWW-Authenticate` challenges.
    pub fn realm(&self) -> &str {
        &self.context.realm
    }

    /// The principal, or why there is none: no credential is a 401, a refused one
    /// keeps its own rejection.
    pub(crate) fn require(&self) -> Result<&Principal, AuthRejection> {
        self.optional()?
            .ok_or_else(|| self.context.missing_credentials())
    }

    /// The principal, `None` without a credential, or the refusal.
    pub(crate) fn optional(&self) -> Result<Option<&Principal>, AuthRejection> {
        match &self.outcome {
            Outcome::Missing => Ok(None),
            Outcome::Authenticated(principal) => Ok(Some(principal)),
            Outcome::Refused(refusal) => Err(self.refusal(*refusal)),
        }
    }

    /// A 500 if a guard requires scopes the app never registered: a typo in a marker
    /// must not silently pass (or silently refuse everyone). `required` is the
    /// scopes of the scope set `S`.
    pub(crate) fn ensure_registered<S: 'static>(
        &self,
        required: &[Scope],
    ) -> Result<(), AuthRejection> {
        let set = TypeId::of::<S>();
        if self.context.registered.contains(set) {
            return Ok(());
        }
        match self.context.registry.check_registered(required) {
            Ok(()) => {
                self.context.registered.insert(set);
                Ok(())
            }
            Err(unknown) => {
                let scopes = join_scopes(
                    &unknown
                        .0
                        .iter()
                        .filter_map(|s| Scope::new(s.as_str()).ok())
                        .collect::<Vec<_>>(),
                );
                tracing::error!(
                    %scopes,
                    "a route guard requires scopes that are not in the gate's registry: \
                     declare them in the registry (ScopeRegistry::of) or fix the marker"
                );
                Err(UnregisteredScopes::new(scopes).into())
            }
        }
    }

    /// A 403 for a live token that lacks `required` (listed in the challenge).
    pub(crate) fn insufficient(&self, required: &[Scope], message: String) -> AuthRejection {
        InsufficientScope::new(self.context.realm.clone(), required, message).into()
    }

    /// A 403 for a live token that is not a user's full session.
    pub(crate) fn needs_full_session(&self) -> AuthRejection {
        let message = "This route needs a user's full session (scope core.user_auth).";
        self.insufficient(&[Scope::USER_AUTH], message.to_owned())
    }

    fn refusal(&self, refusal: Refusal) -> AuthRejection {
        match refusal {
            Refusal::Malformed(message) => {
                InvalidRequest::new(self.context.realm.clone(), message).into()
            }
            Refusal::InvalidToken => self.context.invalid_token.clone().into(),
            Refusal::ApiKey => self.context.api_key.clone().into(),
            Refusal::Unavailable => TemporarilyUnavailable.into(),
        }
    }
}
