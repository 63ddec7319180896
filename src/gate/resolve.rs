//! Resolving a presented secret to a [`Principal`]: as far as possible without an
//! await, so the layer can answer a request for a token it has seen without
//! boxing a future; then the rest, when a store read or a slow user load is
//! needed.

use std::{
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Instant,
};

use chrono::{DateTime, Utc};

use super::{last_use::Used, tokens::refuse, ScopeGate};
use crate::{
    api_key::Unusable,
    error::{Error, InvalidTokenReason},
    principal::Principal,
    secret::{SecretDigest, SecretKind},
    token::Token,
    user::{BoxError, LoadedUser, UserLoad, UserLoadFor},
};

/// How far [`ScopeGate::resolve_now`] got.
pub(crate) enum Resolving {
    /// Settled, without an await.
    Done(Result<Principal, Error>),
    /// Needs an await; [`ScopeGate::resume`] finishes it.
    Pending(Resume),
}

/// Where a lookup that needs an await stands. Owns all it holds, so it can move
/// into a future.
pub(crate) enum Resume {
    /// A well-formed API key, with direct key authentication on: looked up in
    /// the store.
    ApiKey,
    /// A token the store's synchronous fast path does not hold.
    Token {
        digest: SecretDigest,
        remembered: bool,
    },
    /// A live token whose user did not load on the first poll.
    User { live: Live, load: UserLoad },
}

/// What [`ScopeGate::check_token`] made of a token.
enum Checked {
    Done(Result<Principal, Error>),
    /// Live; its user is still loading.
    Loading(Live, UserLoad),
}

/// A token found live: what is left is its user, who holds the token once loaded.
pub(crate) struct Live {
    digest: SecretDigest,
    /// The digest memo already knows the secret.
    remembered: bool,
    now: DateTime<Utc>,
}

/// How often a token may be judged again because it changed while its user was
/// loading, before the request is refused.
const CHANGED_WHILE_LOADING: usize = 3;

/// The principal of a user token, once its user has loaded.
fn user_principal(user: Result<Option<LoadedUser>, BoxError>) -> Result<Principal, Error> {
    user.map_err(Error::UserLoader)?
        .and_then(Principal::of_user_token)
        .ok_or_else(|| refuse(InvalidTokenReason::UserUnavailable))
}

impl ScopeGate {
    /// [`ScopeGate::authenticate`] without a span of its own: the layer calls it
    /// inside the request's span.
    pub(crate) async fn resolve(&self, secret: &[u8]) -> Result<Principal, Error> {
        match self.resolve_now(secret) {
            Resolving::Done(outcome) => outcome,
            Resolving::Pending(resume) => self.resume(secret, resume).await,
        }
    }

    /// Resolves `secret` as far as it can without awaiting: a malformed secret,
    /// and a token in the cache's hot table whose user the loader returns on its
    /// first poll, are settled here.
    pub(crate) fn resolve_now(&self, secret: &[u8]) -> Resolving {
        let codec = &self.shared.codec;
        // Format and checksum first: a made-up string is refused before anything
        // hashes it or the store sees it.
        match codec.check(secret) {
            Ok(SecretKind::Token) => {}
            Ok(SecretKind::ApiKey) if !self.shared.direct_api_keys => {
                return Resolving::Done(Err(refuse(InvalidTokenReason::ApiKey)))
            }
            Ok(SecretKind::ApiKey) => return Resolving::Pending(Resume::ApiKey),
            Err(_) => return Resolving::Done(Err(refuse(InvalidTokenReason::Malformed))),
        }
        // A token seen before skips SHA-256.
        let (digest, remembered) = match self.shared.memo.digest(codec.body(secret)) {
            Some(digest) => (digest, true),
            None => (codec.digest(secret), false),
        };
        // One read of the clock serves the cache's lifetimes and the gate's time.
        let at = Instant::now();
        match self.hot_token(&digest, at) {
            Some(token) => match self.check_token(Some(token), digest, remembered, secret, at) {
                Checked::Done(outcome) => Resolving::Done(outcome),
                Checked::Loading(live, load) => Resolving::Pending(Resume::User { live, load }),
            },
            None => Resolving::Pending(Resume::Token { digest, remembered }),
        }
    }

    /// Finishes what [`ScopeGate::resolve_now`] left pending, for the same `secret`.
    pub(crate) async fn resume(&self, secret: &[u8], resume: Resume) -> Result<Principal, Error> {
        let mut resume = resume;
        for _ in 0..CHANGED_WHILE_LOADING {
            let (live, load) = match resume {
                Resume::ApiKey => return self.resolve_api_key(secret).await,
                Resume::Token { digest, remembered } => {
                    let token = self.token_by_digest(&digest).await?;
                    match self.check_token(token, digest, remembered, secret, Instant::now()) {
                        Checked::Done(outcome) => return outcome,
                        Checked::Loading(live, load) => (live, load),
                    }
                }
                Resume::User { live, load } => (live, load),
            };
            let principal = user_principal(load.await)?;
            // The token was read before the user load's await: a revocation may
            // have been acknowledged since. Acceptance is here, so check it here.
            match self.still_granted(&live.digest, &principal).await? {
                true => return Ok(self.principal(live, principal, secret)),
                false => {
                    resume = Resume::Token {
                        digest: live.digest,
                        remembered: live.remembered,
                    }
                }
            }
        }
        Err(refuse(InvalidTokenReason::Unknown))
    }

    /// Whether the token `principal` was built from still grants what it did,
    /// after an await: asked of the cache's hot table first (it answers nothing
    /// for a token with a revocation settled or in flight), then of the store. `false`: it changed (its scopes
    /// grew, its expiry was capped) and must be judged again; an error: it is
    /// gone.
    async fn still_granted(
        &self,
        digest: &SecretDigest,
        principal: &Principal,
    ) -> Result<bool, Error> {
        let Some(token) = principal.token() else {
            return Ok(true);
        };
        if let Some(current) = self.hot_token(digest, Instant::now()) {
            if current.grants_as(token) {
                return Ok(true);
            }
        }
        match self.token_by_digest(digest).await? {
            Some(current) if current.grants_as(token) => Ok(true),
            Some(current) if current.id == token.id => Ok(false),
            _ => Err(refuse(InvalidTokenReason::Unknown)),
        }
    }

    /// The token whose secret has `digest`, if the cache's hot table holds it.
    fn hot_token(&self, digest: &SecretDigest, at: Instant) -> Option<Arc<Token>> {
        self.shared.cache.as_ref()?.hot_token(digest, at)
    }

    /// The token whose secret has `digest`, through the cache if there is one.
    async fn token_by_digest(&self, digest: &SecretDigest) -> Result<Option<Arc<Token>>, Error> {
        Ok(match &self.shared.cache {
            Some(cache) => cache.shared_token(digest).await?,
            None => self
                .shared
                .store
                .token_by_digest(digest)
                .await?
                .map(Arc::new),
        })
    }

    /// The token, if it is the one for `digest` and live at `at` (the monotonic
    /// time just read); its user loaded if that finishes on the first poll.
    fn check_token(
        &self,
        token: Option<Arc<Token>>,
        digest: SecretDigest,
        remembered: bool,
        secret: &[u8],
        at: Instant,
    ) -> Checked {
        let Some(token) = token.filter(|token| token.digest == digest) else {
            return Checked::Done(Err(refuse(InvalidTokenReason::Unknown)));
        };
        // Untruncated: only compared here; `note_use` truncates what it writes.
        let now = self.shared.clock.now_at(at);
        if token.is_expired_at(now) {
            return Checked::Done(Err(refuse(InvalidTokenReason::Expired)));
        }
        let live = Live {
            digest,
            remembered,
            now,
        };
        if token.user_id.is_none() {
            return Checked::Done(Ok(self.principal(
                live,
                Principal::anonymous(token),
                secret,
            )));
        }
        let wanted = match self.shared.users.load_active_now(UserLoadFor::Token(token)) {
            Ok(user) => return Checked::Done(self.admit(live, user, secret)),
            Err(wanted) => wanted,
        };
        let mut load = self.user_load(wanted);
        // A loader that is not done on its first poll keeps its future, already
        // boxed, and is polled again with the task's waker by `resume`: it is
        // never started twice. One that is done on its first poll may still have
        // taken its time in it (a blocking call, a preempted thread): a
        // revocation may have been acknowledged since the token was read, so it
        // is checked again as after an await, not admitted here. Only
        // `load_user_now`, which answers from memory by contract, admits at once.
        match load.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(user) => Checked::Loading(live, Box::pin(std::future::ready(user))),
            Poll::Pending => Checked::Loading(live, load),
        }
    }

    /// The principal for a live token whose user loaded without an await.
    fn admit(
        &self,
        live: Live,
        user: Result<Option<LoadedUser>, BoxError>,
        secret: &[u8],
    ) -> Result<Principal, Error> {
        Ok(self.principal(live, user_principal(user)?, secret))
    }

    fn principal(&self, live: Live, principal: Principal, secret: &[u8]) -> Principal {
        if let Some(token) = principal.token() {
            self.note_use(
                Used::Token(&token.id),
                &live.digest,
                token.last_use,
                live.now,
            );
        }
        if !live.remembered {
            let body = self.shared.codec.body(secret);
            self.shared.memo.remember(body, live.digest);
        }
        principal
    }

    /// An API key's principal, with direct key authentication on. `secret`
    /// passed [`ScopeGate::resolve_now`]'s check as a key.
    async fn resolve_api_key(&self, secret: &[u8]) -> Result<Principal, Error> {
        let digest = self.shared.codec.digest(secret);
        let now = self.now();
        let key = self
            .shared
            .store
            .api_key_by_digest(&digest)
            .await?
            .ok_or_else(|| refuse(InvalidTokenReason::Unknown))?;
        key.usable_with(&digest, now).map_err(|unusable| {
            refuse(match unusable {
                Unusable::Unknown => InvalidTokenReason::Unknown,
                Unusable::Inactive => InvalidTokenReason::InactiveKey,
                Unusable::Expired => InvalidTokenReason::Expired,
            })
        })?;
        let (owner, awaited) = self.load_active_user_telling(&key.user_id).await;
        if awaited {
            // The key was read before that await: a revocation may have been
            // acknowledged since. Acceptance is here, so check it here.
            let current = self.shared.store.api_key_by_digest(&digest).await?;
            if !current.is_some_and(|current| current.grants_as(&key)) {
                return Err(refuse(InvalidTokenReason::Unknown));
            }
        }
        let owner = owner?.ok_or_else(|| refuse(InvalidTokenReason::UserUnavailable))?;
        self.note_use(Used::ApiKey(&key.id), &digest, key.last_use, now);
        let scopes = self.held_by(key.token_scopes(), owner.is_admin());
        let retired_secret = key.digest != digest;
        Ok(Principal::from_api_key(
            key,
            owner,
            scopes.into(),
            retired_secret,
        ))
    }

    /// Records a credential's use, throttled.
    fn note_use(
        &self,
        used: Used<'_>,
        digest: &SecretDigest,
        recorded: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        if let Some(last_use) = &self.shared.last_use {
            last_use.note(&self.shared.store, used, digest, recorded, now);
        }
    }
}
