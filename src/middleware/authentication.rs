//! [`Authentication`]: what the layer found, attached to every request it sees.

use std::{any::TypeId, sync::Arc};

use super::context::Context;
#[cfg(feature = "router")]
use super::credentials::TokenSources;
use crate::{
    error::InvalidTokenReason,
    principal::Principal,
    rejection::{
        AuthRejection, InsufficientScope, InvalidRequest, TemporarilyUnavailable,
        UnregisteredScopes,
    },
    scope::{join_scopes, Scope},
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

/// What the layer found.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Missing,
    Authenticated(Principal),
    Refused(Refusal),
}

/// Why the layer refused a credential. `kind`: what the credential looked like
/// (`token`, `api_key`, `unrecognized`), for the request's span.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refusal {
    Malformed(&'static str),
    InvalidToken {
        reason: InvalidTokenReason,
        kind: &'static str,
    },
    Unavailable {
        kind: &'static str,
    },
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

    /// What the layer found.
    pub(crate) fn outcome(&self) -> &Outcome {
        &self.outcome
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
            // An API key where a token belongs.
            Refusal::InvalidToken {
                reason: InvalidTokenReason::ApiKey,
                ..
            } => self.context.api_key.clone().into(),
            Refusal::InvalidToken { .. } => self.context.invalid_token.clone().into(),
            Refusal::Unavailable { .. } => TemporarilyUnavailable.into(),
        }
    }
}
