//! API keys: long-lived, named, scoped credentials owned by a user.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    ids::{ApiKeyId, UserId},
    scope::Scope,
    secret::{Secret, SecretDigest},
    token::Token,
};

/// A stored API key. The secret itself is never kept: only its [`SecretDigest`] and a
/// non-secret `start` to recognise it by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApiKey {
    /// Public id, to manage the key.
    pub id: ApiKeyId,
    /// The owner.
    pub user_id: UserId,
    /// A name for people (trimmed).
    pub name: String,
    /// `None`: full access on behalf of the owner; otherwise the scopes its tokens get.
    pub scope: Option<BTreeSet<Scope>>,
    /// Cap, in days, on the lifetime of tokens minted from the key; `None` = the default lifetime.
    pub token_duration: Option<f64>,
    /// Inactive keys cannot mint tokens.
    pub active: bool,
    /// Deactivated by an administrator who does not own it: it stays inactive
    /// until an administrator (or the app itself) reactivates it. The router
    /// lets no owner lift it.
    #[serde(default)]
    pub locked: bool,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it last minted a token.
    pub last_use: Option<DateTime<Utc>>,
    /// When it stops working, if ever.
    pub expires: Option<DateTime<Utc>>,
    /// Digest of the current secret.
    pub digest: SecretDigest,
    /// Non-secret display form: prefix, kind and the first four characters.
    pub start: String,
    /// The secret replaced by the last rotation, while its grace period lasts.
    pub retired: Option<RetiredSecret>,
}

/// A rotated-out secret that keeps working until `valid_until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetiredSecret {
    /// Digest of the old secret.
    pub digest: SecretDigest,
    /// The end of its grace period.
    pub valid_until: DateTime<Utc>,
}

impl ApiKey {
    /// Whether `self` grants what `other` does: the same record, `last_use`
    /// aside (it changes without changing a grant).
    pub(crate) fn grants_as(&self, other: &ApiKey) -> bool {
        self.id == other.id
            && self.user_id == other.user_id
            && self.scope == other.scope
            && self.token_duration == other.token_duration
            && self.active == other.active
            && self.locked == other.locked
            && self.expires == other.expires
            && self.digest == other.digest
            && self.retired == other.retired
    }

    /// Whether the key has expired at `now`.
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }

    /// Whether `digest` is this key's secret at `now`: the current one, or the
    /// retired one during its grace period. Constant-time in the digests.
    pub fn accepts(&self, digest: &SecretDigest, now: DateTime<Utc>) -> bool {
        let current = self.digest == *digest;
        let retired = self
            .retired
            .as_ref()
            .is_some_and(|r| r.digest == *digest && now < r.valid_until);
        current | retired
    }

    /// Whether the key may be used with the secret whose digest is `digest` at
    /// `at`: it accepts the secret, is active and has not expired. The one rule
    /// behind an exchange, a key sent directly and a mint's re-check; each
    /// caller answers the reason in its own terms.
    pub(crate) fn usable_with(
        &self,
        digest: &SecretDigest,
        at: DateTime<Utc>,
    ) -> Result<(), Unusable> {
        if !self.accepts(digest, at) {
            Err(Unusable::Unknown)
        } else if !self.active {
            Err(Unusable::Inactive)
        } else if self.is_expired_at(at) {
            Err(Unusable::Expired)
        } else {
            Ok(())
        }
    }

    /// Whether `token`, minted from this key with the secret whose digest is
    /// `key_digest`, is legitimate against the key as it is now: the key is
    /// active, unexpired at the token's creation and accepts the secret; the
    /// token is its owner's, carries no scope the key does not grant, and ends
    /// no later than the key. A store checks this atomically with the insert,
    /// so a mint racing a deactivation, rotation, scope narrowing or expiry cap
    /// stores nothing the change would have revoked.
    pub fn may_mint(&self, token: &Token, key_digest: &SecretDigest) -> bool {
        let within_scope = self
            .scope
            .as_ref()
            .is_none_or(|granted| token.scopes.iter().all(|s| granted.contains(s)));
        self.usable_with(key_digest, token.created).is_ok()
            && token.user_id.as_ref() == Some(&self.user_id)
            && within_scope
            && self.expires.is_none_or(|end| token.expires <= end)
    }

    /// The scopes a token minted from this key carries by default.
    pub fn token_scopes(&self) -> BTreeSet<Scope> {
        self.scope
            .clone()
            .unwrap_or_else(|| BTreeSet::from([Scope::USER_AUTH]))
    }
}

/// Why a key cannot be used ([`ApiKey::usable_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// The secret is not the key's (nor its retired one within the grace).
    Unknown,
    Inactive,
    Expired,
}

/// What to create: [`ScopeGate::create_api_key`](crate::ScopeGate::create_api_key)'s input.
///
/// ```
/// use scopegate::NewApiKey;
/// use std::time::Duration;
/// let key = NewApiKey::new("ci upload")
///     .scope(["core.data.write"])
///     .token_lifetime(Duration::from_secs(3600))
///     .expires_in(Duration::from_secs(90 * 86_400));
/// # let _ = key;
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NewApiKey {
    /// The key's name; trimmed, 1–255 characters.
    pub name: String,
    /// Scope ids, or `None` for full access.
    #[serde(default)]
    pub scope: Option<Vec<String>>,
    /// Cap on minted tokens' lifetime, in days as the JSON body carries it (set it
    /// from Rust with [`NewApiKey::token_lifetime`]).
    #[serde(default)]
    pub token_duration: Option<f64>,
    /// Whether the key starts active (default `true`).
    #[serde(default = "default_active")]
    pub active: bool,
    /// Lifetime of the key itself, in days as the JSON body carries it; `None`: it
    /// does not expire (set it from Rust with [`NewApiKey::expires_in`]).
    #[serde(default)]
    pub expires_in_days: Option<f64>,
}

fn default_active() -> bool {
    true
}

impl NewApiKey {
    /// A full-access, active, non-expiring key named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            scope: None,
            token_duration: None,
            active: true,
            expires_in_days: None,
        }
    }

    /// Restricts the key to `scopes`.
    #[must_use]
    pub fn scope<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scope = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Caps the lifetime of the tokens the key mints.
    #[must_use]
    pub fn token_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.token_duration = Some(as_days(lifetime));
        self
    }

    /// Sets whether the key starts active.
    #[must_use]
    pub fn active(mut self, active: bool) -> Self {
        self.active = active;
        self
    }

    /// Makes the key expire `lifetime` from now.
    #[must_use]
    pub fn expires_in(mut self, lifetime: std::time::Duration) -> Self {
        self.expires_in_days = Some(as_days(lifetime));
        self
    }
}

/// A partial update: `None` leaves a field as it is; `Some(None)` clears an optional one
/// (`scope: Some(None)` makes the key full-access).
///
/// In JSON, an absent field is `None` and `null` is `Some(None)`:
/// `{"scope": null}` makes the key full-access, `{}` changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyUpdate {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New scope list, or `Some(None)` for full access.
    #[serde(default, deserialize_with = "present")]
    pub scope: Option<Option<Vec<String>>>,
    /// New token-duration cap, or `Some(None)` for the default lifetime.
    #[serde(default, deserialize_with = "present")]
    pub token_duration: Option<Option<f64>>,
    /// Activate or deactivate. Deactivating revokes the key's tokens.
    #[serde(default)]
    pub active: Option<bool>,
    /// Expire `days` from now, or `Some(None)` to never expire.
    #[serde(default, deserialize_with = "present")]
    pub expires_in_days: Option<Option<f64>>,
}

/// A field that is present, `null` included: absent fields take the `default` (`None`).
fn present<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// An API key just created or rotated: the secret, shown this once, and the stored record.
#[derive(Debug, Clone)]
pub struct IssuedApiKey {
    /// The key secret. Hand it to the owner; it cannot be recovered later.
    pub secret: Secret,
    /// The record as stored.
    pub key: ApiKey,
}

/// A validated change to a key, applied by the store atomically with whatever it
/// implies for the key's tokens: [`TokenStore::modify_api_key`](crate::store::TokenStore::modify_api_key).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum KeyChange {
    /// Set the given fields.
    Update {
        /// New name.
        name: Option<String>,
        /// New scope (`Some(None)`: full access).
        scope: Option<Option<BTreeSet<Scope>>>,
        /// New token-duration cap.
        token_duration: Option<Option<f64>>,
        /// New active flag. A locked key stays inactive.
        active: Option<bool>,
        /// Lock the key (`Some(true)`, which also deactivates it) or lift its
        /// lock (`Some(false)`), before `active` is applied.
        locked: Option<bool>,
        /// New expiry.
        expires: Option<Option<DateTime<Utc>>>,
    },
    /// Replace the secret; keep the old one until `retire_until`, if given.
    Rotate {
        /// Digest of the new secret.
        digest: SecretDigest,
        /// Display form of the new secret.
        start: String,
        /// End of the old secret's grace period; `None`: it stops at once.
        retire_until: Option<DateTime<Utc>>,
    },
}

/// What a [`KeyChange`] means for the tokens the key minted before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenFate {
    /// They stay as they are.
    Keep,
    /// They are deleted with the change.
    Revoke,
    /// Those expiring later than this instant now expire at it: a token never
    /// outlives its key.
    ExpireBy(DateTime<Utc>),
}

impl KeyChange {
    /// Applies the change to `key` and says what becomes of the key's existing
    /// tokens, in the same atomic write: revoked on deactivation, on a scope change,
    /// and on a rotation without grace (the old secret is presumed compromised);
    /// capped at the new expiry when the key's expiry moves earlier. A locked key
    /// stays inactive whatever `active` says: the lock is checked here, inside
    /// the store's atomic write, so a reactivation racing an administrator's
    /// lock cannot lift it.
    pub fn apply(&self, key: &mut ApiKey) -> TokenFate {
        match self {
            KeyChange::Update {
                name,
                scope,
                token_duration,
                active,
                locked,
                expires,
            } => {
                let mut revoke = false;
                if let Some(name) = name {
                    key.name.clone_from(name);
                }
                if let Some(scope) = scope {
                    revoke |= key.scope != *scope;
                    key.scope.clone_from(scope);
                }
                if let Some(duration) = token_duration {
                    key.token_duration = *duration;
                }
                if let Some(locked) = locked {
                    key.locked = *locked;
                }
                let next_active = active.unwrap_or(key.active) && !key.locked;
                revoke |= key.active && !next_active;
                key.active = next_active;
                let mut cap = None;
                if let Some(expires) = expires {
                    let earlier = match (key.expires, *expires) {
                        (_, None) => false,
                        (None, Some(_)) => true,
                        (Some(old), Some(new)) => new < old,
                    };
                    if earlier {
                        cap = *expires;
                    }
                    key.expires = *expires;
                }
                match (revoke, cap) {
                    (true, _) => TokenFate::Revoke,
                    (false, Some(at)) => TokenFate::ExpireBy(at),
                    (false, None) => TokenFate::Keep,
                }
            }
            KeyChange::Rotate {
                digest,
                start,
                retire_until,
            } => {
                key.retired = retire_until.map(|valid_until| RetiredSecret {
                    digest: key.digest,
                    valid_until,
                });
                key.digest = *digest;
                key.start.clone_from(start);
                match retire_until {
                    None => TokenFate::Revoke,
                    Some(_) => TokenFate::Keep,
                }
            }
        }
    }
}

/// A Rust-API duration in the days the records and the HTTP API use.
pub(crate) fn as_days(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() / 86_400.0
}
