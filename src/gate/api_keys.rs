//! API-key operations: create, list, update, rotate, delete, and exchange for tokens.

use std::{collections::BTreeSet, time::Duration};

use chrono::{SubsecRound, TimeDelta};
use serde::Deserialize;

use super::{limits, span, ScopeGate};
use crate::{
    api_key::{ApiKey, ApiKeyUpdate, IssuedApiKey, KeyChange, NewApiKey},
    error::Error,
    ids::{ApiKeyId, TokenId, UserId},
    scope::{InvalidScopes, Scope},
    secret::SecretKind,
    store::{Page, StoreErrorKind},
    token::{IssuedToken, Token},
};

/// The longest a rotated-out secret may keep working.
const MAX_GRACE: Duration = Duration::from_secs(30 * 86_400);

/// An exchange of a key for a token: optional duration (days) and scope narrowing.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct TokenRequest {
    /// Days, as the JSON body carries it (from Rust: [`TokenRequest::lifetime`]), from
    /// one second to 3650 days; capped at the key's `token_duration` (or the default
    /// lifetime).
    #[serde(default)]
    pub duration: Option<f64>,
    /// A subset of the key's scopes; never more.
    #[serde(default)]
    pub scope: Option<Vec<String>>,
}

impl TokenRequest {
    /// A token for as long as the key allows, with all the key's scopes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a token lasting `lifetime` (capped at the key's token lifetime).
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.duration = Some(limits::as_days(lifetime));
        self
    }

    /// Asks for these scopes only: a subset of the key's.
    #[must_use]
    pub fn scope<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scope = Some(scopes.into_iter().map(Into::into).collect());
        self
    }
}

impl ScopeGate {
    /// Checks a scope list for a key of an owner with `is_admin`: `None` is full
    /// access; a list must be non-empty and assignable.
    fn key_scope(
        &self,
        scope: Option<&[String]>,
        is_admin: bool,
    ) -> Result<Option<BTreeSet<Scope>>, Error> {
        match scope {
            None => Ok(None),
            Some([]) => Err(Error::invalid(
                "scope must be null (full access) or a non-empty list.",
            )),
            Some(ids) => {
                let ids = ids.iter().map(String::as_str);
                Ok(Some(self.shared.registry.check_assignable(ids, is_admin)?))
            }
        }
    }

    /// Whether the owner of a key is an admin; an owner who is gone is not.
    async fn owner_is_admin(&self, owner: &UserId) -> Result<bool, Error> {
        Ok(self
            .load_active_user(owner)
            .await?
            .is_some_and(|u| u.is_admin()))
    }

    /// Creates a key for `owner`, who must be an active user. The secret is in the
    /// result and nowhere else.
    #[tracing::instrument(skip_all)]
    pub async fn create_api_key(
        &self,
        owner: &UserId,
        new: NewApiKey,
    ) -> Result<IssuedApiKey, Error> {
        let name = limits::key_name(&new.name)?;
        let token_duration = new
            .token_duration
            .map(|d| limits::duration_field("token_duration", d))
            .transpose()?;
        let expires_in = new
            .expires_in_days
            .map(|d| limits::duration_field("expires_in_days", d))
            .transpose()?;
        let user = self
            .load_active_user(owner)
            .await?
            .ok_or_else(|| Error::invalid("Unknown or inactive user."))?;
        let scope = self.key_scope(new.scope.as_deref(), user.is_admin())?;
        let now = self.now();
        let (secret, digest) = self.shared.codec.generate(SecretKind::ApiKey);
        let key = ApiKey {
            id: ApiKeyId::generate(),
            user_id: owner.clone(),
            name,
            scope,
            token_duration,
            active: new.active,
            locked: false,
            created: now,
            last_use: None,
            expires: expires_in.map(|days| now + span(days)),
            digest,
            start: self.shared.codec.start(SecretKind::ApiKey, &secret),
            retired: None,
        };
        self.shared.store.insert_api_key(&key).await?;
        Ok(IssuedApiKey { secret, key })
    }

    /// The key with `id`, expired or not (its owner may want to see it).
    pub async fn api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, Error> {
        Ok(self.shared.store.api_key_by_id(id).await?)
    }

    /// A user's keys, oldest first.
    pub async fn api_keys_of_user(&self, user: &UserId, page: Page) -> Result<Vec<ApiKey>, Error> {
        Ok(self.shared.store.api_keys_of_user(user, page).await?)
    }

    /// Applies a partial update. Deactivating the key or changing its scope revokes
    /// its tokens in the same atomic step. Reactivating a key lifts an
    /// administrator's lock ([`ApiKey::locked`]): this is the app's own call;
    /// an app that lets owners reactivate their keys should check the lock first,
    /// as the router does.
    pub async fn update_api_key(
        &self,
        id: &ApiKeyId,
        update: ApiKeyUpdate,
    ) -> Result<ApiKey, Error> {
        let lock = (update.active == Some(true)).then_some(false);
        self.update_api_key_locking(id, update, lock).await
    }

    /// [`ScopeGate::update_api_key`], also locking the key (`Some(true)`) or
    /// lifting its lock (`Some(false)`) in the same atomic write.
    #[tracing::instrument(skip_all)]
    pub(crate) async fn update_api_key_locking(
        &self,
        id: &ApiKeyId,
        update: ApiKeyUpdate,
        locked: Option<bool>,
    ) -> Result<ApiKey, Error> {
        let key = self.api_key(id).await?.ok_or(Error::NotFound("API key"))?;
        let name = update.name.as_deref().map(limits::key_name).transpose()?;
        let token_duration = match update.token_duration {
            Some(Some(days)) => Some(Some(limits::duration_field("token_duration", days)?)),
            other => other,
        };
        let expires = match update.expires_in_days {
            Some(Some(days)) => Some(Some(
                self.now() + span(limits::duration_field("expires_in_days", days)?),
            )),
            Some(None) => Some(None),
            None => None,
        };
        let scope = match &update.scope {
            Some(scope) => {
                let is_admin = self.owner_is_admin(&key.user_id).await?;
                Some(self.key_scope(scope.as_deref(), is_admin)?)
            }
            None => None,
        };
        let change = KeyChange::Update {
            name,
            scope,
            token_duration,
            active: update.active,
            locked,
            expires,
        };
        self.change_api_key(id, &change).await
    }

    /// Deletes a key and, with it, every token it minted.
    pub async fn delete_api_key(&self, id: &ApiKeyId) -> Result<ApiKey, Error> {
        let (key, _) = self
            .shared
            .store
            .delete_api_key(id)
            .await?
            .ok_or(Error::NotFound("API key"))?;
        self.purge_soon();
        Ok(key)
    }

    /// Issues a new secret for the key (same name, scope and limits). The old
    /// secret keeps working for `grace` (at most 30 days), and so do tokens it minted;
    /// with no grace the old secret and its tokens stop at once.
    #[tracing::instrument(skip_all)]
    pub async fn rotate_api_key(
        &self,
        id: &ApiKeyId,
        grace: Duration,
    ) -> Result<IssuedApiKey, Error> {
        if grace > MAX_GRACE {
            return Err(Error::invalid("The grace period must be at most 30 days."));
        }
        let retire_until = (!grace.is_zero()).then(|| {
            let grace = TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
            (self.now() + grace).trunc_subsecs(6)
        });
        let (secret, digest) = self.shared.codec.generate(SecretKind::ApiKey);
        let change = KeyChange::Rotate {
            digest,
            start: self.shared.codec.start(SecretKind::ApiKey, &secret),
            retire_until,
        };
        let key = self.change_api_key(id, &change).await?;
        Ok(IssuedApiKey { secret, key })
    }

    /// Applies `change` in the store; the tokens it revoked are already out of any cache.
    async fn change_api_key(&self, id: &ApiKeyId, change: &KeyChange) -> Result<ApiKey, Error> {
        let (key, _revoked) = self
            .shared
            .store
            .modify_api_key(id, change)
            .await?
            .ok_or(Error::NotFound("API key"))?;
        self.purge_soon();
        Ok(key)
    }

    /// Exchanges a key secret for a new token (what `POST /api_key/token` does).
    ///
    /// The duration is `min(requested or cap, cap)` with `cap` the key's
    /// `token_duration` or the default lifetime, and never past the key's own expiry.
    /// Unknown, inactive or expired keys, and keys of unknown or inactive owners, are
    /// [`Error::InvalidGrant`].
    #[tracing::instrument(skip_all)]
    pub async fn exchange_api_key(
        &self,
        secret: &str,
        request: TokenRequest,
    ) -> Result<IssuedToken, Error> {
        // Bounded like every other duration, so absurd requests are refused, not capped.
        let requested_days = request
            .duration
            .map(|days| limits::duration_field("duration", days))
            .transpose()?;
        if request.scope.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::invalid("scope must be a non-empty list when given."));
        }
        let digest = self
            .shared
            .codec
            .parse(SecretKind::ApiKey, secret)
            .map_err(|_| Error::InvalidGrant)?;
        let now = self.now();
        let key = self
            .shared
            .store
            .api_key_by_digest(&digest)
            .await?
            .filter(|key| key.usable_with(&digest, now).is_ok())
            .ok_or(Error::InvalidGrant)?;
        let owner = self
            .load_active_user(&key.user_id)
            .await?
            .ok_or(Error::InvalidGrant)?;
        let scopes = match &request.scope {
            None => key.token_scopes(),
            Some(requested) => self.narrow(&key, requested, owner.is_admin())?,
        };
        // An owner demoted since the key was made keeps none of its admin-only scopes.
        let scopes = self.held_by(scopes, owner.is_admin());
        if scopes.is_empty() {
            return Err(Error::InvalidGrant);
        }
        let cap = key
            .token_duration
            .unwrap_or(self.shared.token_lifetime_days);
        let days = requested_days.map_or(cap, |requested| requested.min(cap));
        let mut expires = now + span(days);
        if let Some(key_expires) = key.expires {
            expires = expires.min(key_expires);
        }
        let (token_secret, token_digest) = self.shared.codec.generate(SecretKind::Token);
        let token = Token {
            id: TokenId::generate(),
            digest: token_digest,
            user_id: Some(key.user_id.clone()),
            scopes: scopes.into(),
            created: now,
            expires,
            api_key_id: Some(key.id.clone()),
            last_use: None,
        };
        // The store re-checks the key atomically with the insert: a deactivation or
        // rotation since our read refuses the mint instead of leaving a stray token.
        let most = self.shared.max_tokens_per_key;
        match self.shared.store.mint_token(&token, &digest, most).await {
            Ok(true) => {}
            Ok(false) => return Err(Error::InvalidGrant),
            Err(err) if err.kind() == StoreErrorKind::TooManyTokens => {
                return Err(Error::TooManyTokens)
            }
            Err(err) => return Err(err.into()),
        }
        Ok(IssuedToken {
            secret: token_secret,
            token,
        })
    }

    /// `scopes` less the admin-only ones, unless their holder is an admin: a key
    /// keeps the scopes it was given, and its owner may have lost the right to
    /// them since.
    pub(super) fn held_by(&self, scopes: BTreeSet<Scope>, is_admin: bool) -> BTreeSet<Scope> {
        if is_admin {
            return scopes;
        }
        let registry = &self.shared.registry;
        scopes
            .into_iter()
            .filter(|scope| !registry.is_admin_only(scope))
            .collect()
    }

    /// The scopes of a token narrowed from `key`: a scoped key allows any subset of
    /// its scopes; a full-access key allows any scope its owner could put on a key.
    fn narrow(
        &self,
        key: &ApiKey,
        requested: &[String],
        owner_is_admin: bool,
    ) -> Result<BTreeSet<Scope>, Error> {
        let allowed = key.token_scopes();
        let mut granted = BTreeSet::new();
        let mut rest = Vec::new();
        for id in requested {
            match allowed.get(id.as_str()) {
                Some(scope) => {
                    granted.insert(scope.clone());
                }
                None => rest.push(id.as_str()),
            }
        }
        if rest.is_empty() {
            return Ok(granted);
        }
        if key.scope.is_some() {
            let mut invalid: Vec<String> = rest.into_iter().map(str::to_owned).collect();
            invalid.sort();
            invalid.dedup();
            return Err(InvalidScopes(invalid).into());
        }
        granted.extend(
            self.shared
                .registry
                .check_assignable(rest, owner_is_admin)?,
        );
        Ok(granted)
    }
}
