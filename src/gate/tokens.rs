//! Token operations: create, authenticate, list, scope, revoke, purge.

use tracing::{level_filters::LevelFilter, Instrument, Level};

use super::{limits, span, ScopeGate};
use crate::{
    error::{Error, InvalidTokenReason},
    ids::{TokenId, UserId},
    principal::Principal,
    scope::Scope,
    scopes::Scopes,
    secret::SecretKind,
    store::{KeyDisposal, Page, Purged},
    token::{IssuedToken, Token},
};

/// Expiry-index entries one store call handles; the sweeper repeats until done.
const PURGE_BATCH: usize = 512;
/// Batches per [`ScopeGate::purge_expired`] call, so one call is bounded.
const MAX_PURGE_BATCHES: usize = 1000;

/// What to create: [`ScopeGate::create_token`]'s input.
///
/// ```
/// use scopegate::{NewToken, Scope};
/// let session = NewToken::for_user("alice".into());
/// let upload = NewToken::anonymous()
///     .scopes([Scope::from_static("upload")])
///     .lifetime(std::time::Duration::from_secs(15 * 60));
/// # let _ = (session, upload);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewToken {
    user: Option<UserId>,
    scopes: Option<Vec<Scope>>,
    days: Option<f64>,
}

impl NewToken {
    /// A token for `user`; by default a full session (`core.user_auth`).
    pub fn for_user(user: UserId) -> Self {
        Self {
            user: Some(user),
            scopes: None,
            days: None,
        }
    }

    /// A token without a user; by default scoped `core.anonymous_session`.
    pub fn anonymous() -> Self {
        Self {
            user: None,
            scopes: None,
            days: None,
        }
    }

    /// The token's scopes instead of the default (duplicates are dropped).
    #[must_use]
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.scopes = Some(scopes.into_iter().collect());
        self
    }

    /// Lifetime instead of the gate's default, from
    /// [`MIN_LIFETIME`](crate::ScopeGate::MIN_LIFETIME) to [`MAX_LIFETIME`](crate::ScopeGate::MAX_LIFETIME).
    #[must_use]
    pub fn lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.days = Some(limits::as_days(lifetime));
        self
    }
}

/// A refusal of a credential, logged with its reason (never shown to the caller).
pub(super) fn refuse(reason: InvalidTokenReason) -> Error {
    tracing::debug!(?reason, "credential refused");
    Error::InvalidToken(reason)
}

impl ScopeGate {
    /// Creates a token. A user token needs an active user.
    #[tracing::instrument(skip_all)]
    pub async fn create_token(&self, new: NewToken) -> Result<IssuedToken, Error> {
        let days = match new.days {
            Some(days) => limits::duration_field("lifetime", days)?,
            None => self.shared.token_lifetime_days,
        };
        let default_scope = match new.user {
            Some(_) => Scope::USER_AUTH,
            None => Scope::ANONYMOUS_SESSION,
        };
        let scopes: Scopes = new
            .scopes
            .unwrap_or_else(|| vec![default_scope])
            .into_iter()
            .collect();
        if scopes.is_empty() {
            return Err(Error::invalid("A token needs at least one scope."));
        }
        // A scope no registry declares is a typo: it would never pass a guard.
        self.shared.registry.check_registered(&scopes)?;
        if let Some(user) = &new.user {
            if self.load_active_user(user).await?.is_none() {
                return Err(Error::invalid("Unknown or inactive user."));
            }
        }
        let now = self.now();
        let (secret, digest) = self.shared.codec.generate(SecretKind::Token);
        let token = Token {
            id: TokenId::generate(),
            digest,
            user_id: new.user,
            scopes,
            created: now,
            expires: now + span(days),
            api_key_id: None,
            last_use: None,
        };
        self.shared.store.insert_token(&token).await?;
        Ok(IssuedToken { secret, token })
    }

    /// Resolves a bearer secret to the live token and its user, or, with
    /// [direct key authentication](crate::ScopeGateBuilder::with_direct_api_keys)
    /// on, an API key to the key and its owner.
    ///
    /// Malformed strings fail before any store access. Unknown, revoked and expired
    /// credentials, inactive keys, and credentials of unknown or inactive users,
    /// fail with [`Error::InvalidToken`]; a store or loader failure is an error
    /// too, never a pass.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal, Error> {
        // A span only when a subscriber takes `INFO`: a disabled one still costs a
        // callsite check, a record, and `log`'s checks (tracing's `log` feature).
        if LevelFilter::current() >= Level::INFO {
            let span = tracing::info_span!("authenticate");
            self.resolve(secret.as_bytes()).instrument(span).await
        } else {
            self.resolve(secret.as_bytes()).await
        }
    }

    /// The live token with `id`; `None` if unknown or expired.
    pub async fn token(&self, id: &TokenId) -> Result<Option<Token>, Error> {
        let now = self.now();
        let token = self.shared.store.token_by_id(id).await?;
        Ok(token.filter(|t| !t.is_expired_at(now)))
    }

    /// A user's live tokens, oldest first. Expired tokens awaiting the sweeper are
    /// left out, so a page may hold fewer than `page.limit`.
    pub async fn tokens_of_user(&self, user: &UserId, page: Page) -> Result<Vec<Token>, Error> {
        let now = self.now();
        let mut tokens = self.shared.store.tokens_of_user(user, page).await?;
        tokens.retain(|t| !t.is_expired_at(now));
        Ok(tokens)
    }

    /// Adds scopes to a live token, durably.
    pub async fn add_token_scopes(&self, id: &TokenId, scopes: &[Scope]) -> Result<Token, Error> {
        self.shared.registry.check_registered(scopes)?;
        if self.token(id).await?.is_none() {
            return Err(Error::NotFound("Token"));
        }
        self.shared
            .store
            .add_token_scopes(id, scopes)
            .await?
            .ok_or(Error::NotFound("Token"))
    }

    /// Revokes a token at once; returns it.
    pub async fn revoke_token(&self, id: &TokenId) -> Result<Token, Error> {
        self.shared
            .store
            .delete_token(id)
            .await?
            .ok_or(Error::NotFound("Token"))
    }

    /// Revokes everything of a disabled user in one call: revokes their tokens and
    /// deactivates their keys (an admin may reactivate them later). Its cost does
    /// not grow with the user's tokens on the bundled stores: they are revoked
    /// at once and their records purged afterwards.
    pub async fn revoke_user(&self, user: &UserId) -> Result<(), Error> {
        self.shared
            .store
            .revoke_user(user, KeyDisposal::Deactivate)
            .await?;
        self.purge_soon();
        Ok(())
    }

    /// Deletes everything of a deleted user in one call: their tokens and keys.
    pub async fn delete_user_credentials(&self, user: &UserId) -> Result<(), Error> {
        self.shared
            .store
            .revoke_user(user, KeyDisposal::Delete)
            .await?;
        self.purge_soon();
        Ok(())
    }

    /// Purges what has expired by now, in bounded batches through the expiry index.
    /// The [`Sweeper`](crate::Sweeper) calls this periodically.
    pub async fn purge_expired(&self) -> Result<Purged, Error> {
        let now = self.now();
        let mut total = Purged::default();
        for _ in 0..MAX_PURGE_BATCHES {
            let batch = self.shared.store.purge_expired(now, PURGE_BATCH).await?;
            let done = batch.examined < PURGE_BATCH;
            total.add(batch);
            if done {
                break;
            }
        }
        Ok(total)
    }
}
