//! A request's credential to a verdict, in one pass: find it in the request
//! (parsed once), resolve it through the gate, settle the outcome into an
//! [`Authentication`].
//!
//! Most requests end in [`AuthState::authenticate_now`], without an await: no
//! credential, a malformed one, or a token the cache holds whose user the loader
//! has at hand. The rest leave a [`Pending`]: the secret, still borrowed from
//! the request, and where the lookup stands. The service copies the secret into
//! the future it boxes ([`Pending::into_owned`]), so the credential is never
//! found twice.

use http::{HeaderMap, Method, Uri};

use super::{
    authentication::{Authentication, Refusal},
    context::Context,
    credentials::{is_b64token, malformed_bearer, Malformed},
    AuthState,
};
use crate::{
    error::{Error, InvalidTokenReason},
    gate::resolve::{Resolving, Resume},
    principal::Principal,
};

/// A request the gate could not settle without an await.
pub(crate) struct Pending<'a> {
    secret: &'a [u8],
    resume: Resume,
}

impl Pending<'_> {
    /// The pending lookup, owning a copy of its secret: ready to move into a
    /// future.
    pub(super) fn into_owned(self) -> OwnedPending {
        OwnedPending {
            // Every secret that reaches the gate's lookup passed its format
            // check, which bounds its length: the copy is whole.
            secret: SecretCopy::of(self.secret),
            resume: self.resume,
        }
    }
}

/// A [`Pending`] that owns its secret.
pub(crate) struct OwnedPending {
    secret: SecretCopy,
    resume: Resume,
}

/// A secret that passed the gate's format check, copied out of the request so a
/// future can own it: inline, since every such secret is short.
struct SecretCopy {
    bytes: [u8; SecretCopy::CAPACITY],
    len: u8,
}

impl SecretCopy {
    /// More than the longest secret the format check passes.
    const CAPACITY: usize = 128;

    /// A copy of `secret`, cut at the capacity (never reached: see
    /// [`Pending::into_owned`]).
    fn of(secret: &[u8]) -> Self {
        let len = secret.len().min(Self::CAPACITY);
        let mut bytes = [0; Self::CAPACITY];
        bytes[..len].copy_from_slice(&secret[..len]);
        Self {
            bytes,
            len: len as u8,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AuthState {
    /// The request's authentication, or what is left of it for
    /// [`AuthState::authenticate_pending`] when it needs an await.
    pub(super) fn authenticate_now<'a>(
        &self,
        method: &Method,
        headers: &'a HeaderMap,
        uri: &'a Uri,
    ) -> Result<Authentication, Pending<'a>> {
        let context = self.context();
        let secret = match context.sources.find_unchecked(method, headers, uri) {
            Ok(Some(secret)) => secret,
            Ok(None) => return Ok(Authentication::missing(Context::local(context))),
            Err(message) => return Ok(self.malformed(message)),
        };
        match self.gate().resolve_now(secret) {
            Resolving::Done(Err(Error::InvalidToken(InvalidTokenReason::Malformed)))
                if !is_b64token(secret) =>
            {
                // Not even RFC 6750's token syntax, which `find_unchecked` left
                // to the gate: name what is wrong, as `find` would have.
                Ok(self.malformed(malformed_bearer(secret)))
            }
            Resolving::Done(outcome) => Ok(self.settle(outcome, secret)),
            Resolving::Pending(resume) => Err(Pending { secret, resume }),
        }
    }

    /// Finishes what [`AuthState::authenticate_now`] left.
    pub(super) async fn authenticate_pending(&self, pending: OwnedPending) -> Authentication {
        let secret = pending.secret.as_bytes();
        let outcome = self.gate().resume(secret, pending.resume).await;
        self.settle(outcome, secret)
    }

    /// The refusal of a request whose credentials are malformed.
    #[cold]
    fn malformed(&self, message: Malformed) -> Authentication {
        Authentication::refused(Context::local(self.context()), Refusal::Malformed(message))
    }

    /// The authentication a lookup of `secret` makes. A store or loader failure
    /// is refused as such: it never passes as authenticated or as anonymous.
    fn settle(&self, outcome: Result<Principal, Error>, secret: &[u8]) -> Authentication {
        let context = Context::local(self.context());
        match outcome {
            Ok(principal) => Authentication::authenticated(context, principal),
            Err(Error::InvalidToken(reason)) => {
                let kind = self.gate().credential_kind(secret);
                Authentication::refused(context, Refusal::InvalidToken { reason, kind })
            }
            Err(err) => {
                crate::rejection::log_refusal(
                    &err,
                    "authentication failed; the request is refused",
                );
                let kind = self.gate().credential_kind(secret);
                Authentication::refused(context, Refusal::Unavailable { kind })
            }
        }
    }
}
