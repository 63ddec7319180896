//! The store's operations on one open database ([`Inner`]), synchronous;
//! [`super::SledStore`] runs them off the async threads.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sled::Batch;

use super::{
    backend,
    encoding::{KeyState, Stamped, Stored},
    layout,
    revocations::{self, Removal},
    tree::{digest_of, key_id_of, put_token, Inner},
};
use crate::{
    api_key::{ApiKey, KeyChange, TokenFate},
    ids::{ApiKeyId, TokenId, UserId},
    scope::Scope,
    secret::SecretDigest,
    store::{KeyDisposal, Page, Purged, StoreError, StoreErrorKind},
    token::Token,
};

/// Index entries one purge write handles: what bounds how long a purge holds
/// the write lock (a few milliseconds).
const PURGE_CHUNK: usize = 128;

fn conflict() -> StoreError {
    StoreError::from_kind(StoreErrorKind::Conflict)
}

/// The write of a touch: `record`'s `last_use` moved forward to `at`, or nothing
/// if the record is gone or was used later. Only the record changes: `last_use`
/// is in no index.
fn touched<R: Stored>(
    record: Option<R>,
    at: DateTime<Utc>,
    last_use: impl FnOnce(&mut R) -> &mut Option<DateTime<Utc>>,
    key: impl FnOnce(&R) -> Vec<u8>,
) -> Result<((), Option<Batch>), StoreError> {
    let Some(mut record) = record else {
        return Ok(((), None));
    };
    let stamp = last_use(&mut record);
    if stamp.is_some_and(|last| last >= at) {
        return Ok(((), None));
    }
    *stamp = Some(at);
    let mut batch = Batch::default();
    batch.insert(key(&record), record.encode()?);
    Ok(((), Some(batch)))
}

/// Stages a key and all its index entries.
fn put_key(batch: &mut Batch, key: &ApiKey) -> Result<(), StoreError> {
    let id = key.id.as_str().as_bytes();
    batch.insert(layout::api_key(&key.id), key.encode()?);
    batch.insert(layout::key_digest(&key.digest), id);
    batch.insert(layout::key_by_user(&key.user_id, key.created, &key.id), id);
    if let Some(expires) = key.expires {
        batch.insert(
            layout::expiry(expires, layout::EXPIRES_KEY, key.id.as_str()),
            id,
        );
    }
    if let Some(retired) = &key.retired {
        batch.insert(layout::key_digest(&retired.digest), id);
        let entry = layout::expiry(
            retired.valid_until,
            layout::EXPIRES_RETIRED_SECRET,
            key.id.as_str(),
        );
        batch.insert(entry, id);
    }
    Ok(())
}

/// Stages the removal of a key and all its index entries (not its tokens).
fn remove_key(batch: &mut Batch, key: &ApiKey) {
    batch.remove(layout::api_key(&key.id));
    batch.remove(layout::key_digest(&key.digest));
    batch.remove(layout::key_by_user(&key.user_id, key.created, &key.id));
    if let Some(expires) = key.expires {
        batch.remove(layout::expiry(
            expires,
            layout::EXPIRES_KEY,
            key.id.as_str(),
        ));
    }
    if let Some(retired) = &key.retired {
        batch.remove(layout::key_digest(&retired.digest));
        batch.remove(layout::expiry(
            retired.valid_until,
            layout::EXPIRES_RETIRED_SECRET,
            key.id.as_str(),
        ));
    }
}

/// Stages a key's replacement: batches apply in order, so the new entries win over
/// the removal of old ones they share.
fn replace_key(batch: &mut Batch, old: &ApiKey, new: &ApiKey) -> Result<(), StoreError> {
    remove_key(batch, old);
    put_key(batch, new)
}

/// Stages a purge of the tokens indexed under `index` that a revocation left
/// behind (see `revocations`).
fn schedule_purge(batch: &mut Batch, index: &[u8]) {
    batch.insert(layout::pending_purge(index), Vec::new());
}

impl Inner {
    /// The live tokens whose digests are the values under `prefix`.
    fn tokens_under(&self, prefix: Vec<u8>, page: Page) -> Result<Vec<Token>, StoreError> {
        let mut tokens = Vec::new();
        let mut skip = page.offset;
        for entry in self.tree.scan_prefix(prefix) {
            let (_, digest) = entry.map_err(backend)?;
            // An index entry without its record is skipped, not an error: the record
            // and its indexes are written together, so this only follows a purge race.
            let Some(token) = self.token(&digest_of(&digest)?)? else {
                continue;
            };
            match skip {
                0 => tokens.push(token),
                _ => skip -= 1,
            }
            if tokens.len() >= page.limit {
                break;
            }
        }
        Ok(tokens)
    }

    /// The live token with `digest`: what every read answers.
    pub(super) fn token(&self, digest: &SecretDigest) -> Result<Option<Token>, StoreError> {
        match self.stamped(digest)? {
            Some(stamped) => self.live(None, stamped),
            None => Ok(None),
        }
    }

    /// The token with `id`, once earlier writes are durable.
    pub(super) fn settled_token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.settled()?;
        self.token_by_id(id)
    }

    fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        match self.stamped_by_id(id)? {
            Some(stamped) => self.live(None, stamped),
            None => Ok(None),
        }
    }

    /// The token with `id` as stored, revoked or not.
    fn stamped_by_id(&self, id: &TokenId) -> Result<Option<Stamped>, StoreError> {
        match self.tree.get(layout::token_id(id)).map_err(backend)? {
            Some(digest) => self.stamped(&digest_of(&digest)?),
            None => Ok(None),
        }
    }

    /// The token with `id`, if it is live: as stored (to write it back), and
    /// as reads answer it (its expiry capped).
    fn live_by_id(&self, id: &TokenId) -> Result<Option<(Stamped, Token)>, StoreError> {
        let Some(stamped) = self.stamped_by_id(id)? else {
            return Ok(None);
        };
        Ok(self
            .live(None, stamped.clone())?
            .map(|live| (stamped, live)))
    }

    pub(super) fn tokens_of_user(
        &self,
        user: &UserId,
        page: Page,
    ) -> Result<Vec<Token>, StoreError> {
        self.settled()?;
        self.tokens_under(layout::tokens_of_user(user), page)
    }

    /// The key with `id`, once earlier writes are durable.
    pub(super) fn settled_api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.settled()?;
        self.api_key(id)
    }

    pub(super) fn api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.get(layout::api_key(id))
    }

    pub(super) fn api_key_by_digest(
        &self,
        digest: &SecretDigest,
    ) -> Result<Option<ApiKey>, StoreError> {
        match self.tree.get(layout::key_digest(digest)).map_err(backend)? {
            Some(id) => self.api_key(&key_id_of(&id)?),
            None => Ok(None),
        }
    }

    /// Keys whose ids are the values under `prefix`.
    fn keys_under(&self, prefix: Vec<u8>, page: Option<Page>) -> Result<Vec<ApiKey>, StoreError> {
        let (skip, take) = page.map_or((0, usize::MAX), |p| (p.offset, p.limit));
        let mut keys = Vec::new();
        for entry in self.tree.scan_prefix(prefix).skip(skip).take(take) {
            let (_, id) = entry.map_err(backend)?;
            if let Some(key) = self.api_key(&key_id_of(&id)?)? {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    pub(super) fn api_keys_of_user(
        &self,
        user: &UserId,
        page: Page,
    ) -> Result<Vec<ApiKey>, StoreError> {
        self.settled()?;
        self.keys_under(layout::keys_of_user(user), Some(page))
    }

    /// Up to `limit` records of the family under `prefix`, after the record
    /// `after`, as `keep` answers them (`None`: skipped, and not counted).
    fn records_after<T: Stored, U>(
        &self,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        limit: usize,
        keep: impl Fn(T) -> Result<Option<U>, StoreError>,
    ) -> Result<Vec<U>, StoreError> {
        self.settled()?;
        let start = match after {
            // The smallest key above `after`.
            Some(mut key) => {
                key.push(0);
                key
            }
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        for entry in self.tree.range(start..) {
            let (key, bytes) = entry.map_err(backend)?;
            if !key.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            if let Some(kept) = keep(T::decode(&bytes)?)? {
                out.push(kept);
            }
        }
        Ok(out)
    }

    pub(super) fn api_keys_after(
        &self,
        after: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let every = |key| Ok(Some(key));
        self.records_after(
            layout::all_api_keys(),
            after.map(layout::api_key),
            limit,
            every,
        )
    }

    /// Up to `limit` live tokens with digests above `after`, in digest order.
    pub(super) fn tokens_after(
        &self,
        after: Option<&SecretDigest>,
        limit: usize,
    ) -> Result<Vec<Token>, StoreError> {
        let live = |stamped| self.live(None, stamped);
        self.records_after(layout::all_tokens(), after.map(layout::token), limit, live)
    }

    /// A conflict if a token with this digest or id is stored already.
    fn ensure_new(&self, token: &Token) -> Result<(), StoreError> {
        for key in [layout::token(&token.digest), layout::token_id(&token.id)] {
            if self.tree.contains_key(key).map_err(backend)? {
                return Err(conflict());
            }
        }
        Ok(())
    }

    pub(super) fn insert_token(&self, token: &Token) -> Result<(), StoreError> {
        self.write(|db| {
            db.ensure_new(token)?;
            let mut batch = Batch::default();
            // A copied token of a key counts towards the key's limit.
            if let Some(key) = &token.api_key_id {
                if let Some(mut state) = db.key_state(key)? {
                    state.live += 1;
                    batch.insert(layout::key_state(key), state.encode()?);
                }
            }
            put_token(&mut batch, token, db.next_sequence()?)?;
            Ok(((), Some(batch)))
        })
    }

    pub(super) fn mint_token(
        &self,
        token: &Token,
        key_digest: &SecretDigest,
        max_tokens: u64,
    ) -> Result<bool, StoreError> {
        let Some(key_id) = &token.api_key_id else {
            return Ok(false);
        };
        self.write(|db| {
            let (Some(mut key), Some(mut state)) = (db.api_key(key_id)?, db.key_state(key_id)?)
            else {
                return Ok((false, None));
            };
            if !key.may_mint(token, key_digest) {
                return Ok((false, None));
            }
            if state.live >= max_tokens {
                return Err(StoreError::from_kind(StoreErrorKind::TooManyTokens));
            }
            db.ensure_new(token)?;
            key.last_use = Some(token.created);
            state.live += 1;
            let mut batch = Batch::default();
            // Only the record changes: last_use is in no index.
            batch.insert(layout::api_key(&key.id), key.encode()?);
            batch.insert(layout::key_state(&key.id), state.encode()?);
            put_token(&mut batch, token, db.next_sequence()?)?;
            Ok((true, Some(batch)))
        })
    }

    pub(super) fn add_token_scopes(
        &self,
        id: &TokenId,
        scopes: &[Scope],
    ) -> Result<Option<Token>, StoreError> {
        self.write(|db| {
            let Some((mut stamped, mut token)) = db.live_by_id(id)? else {
                return Ok((None, None));
            };
            stamped.token.scopes.extend(scopes.iter().cloned());
            token.scopes.clone_from(&stamped.token.scopes);
            let mut batch = Batch::default();
            batch.insert(layout::token(&stamped.token.digest), stamped.encode()?);
            Ok((Some(token), Some(batch)))
        })
    }

    pub(super) fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        self.write(|db| {
            let Some((stamped, token)) = db.live_by_id(id)? else {
                return Ok((None, None));
            };
            let mut removal = Removal::default();
            removal.token(&stamped.token);
            removal.live_token_removed(db, &stamped.token)?;
            Ok((Some(token), Some(removal.into_batch()?)))
        })
    }

    pub(super) fn touch_token(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(|db| {
            let stamped = db.live_by_id(id)?.map(|(stamped, _)| stamped);
            touched(
                stamped,
                at,
                |s| &mut s.token.last_use,
                |s| layout::token(&s.token.digest),
            )
        })
    }

    pub(super) fn touch_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(|db| {
            let key = db.api_key(id)?;
            touched(key, at, |k| &mut k.last_use, |k| layout::api_key(&k.id))
        })
    }

    pub(super) fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.write(|db| {
            for index in [layout::api_key(&key.id), layout::key_digest(&key.digest)] {
                if db.tree.contains_key(index).map_err(backend)? {
                    return Err(conflict());
                }
            }
            let mut batch = Batch::default();
            put_key(&mut batch, key)?;
            let state = KeyState::new(db.next_sequence()?);
            batch.insert(layout::key_state(&key.id), state.encode()?);
            Ok(((), Some(batch)))
        })
    }

    pub(super) fn modify_api_key(
        &self,
        id: &ApiKeyId,
        change: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.write(|db| {
            let Some(old) = db.api_key(id)? else {
                return Ok((None, None));
            };
            let mut key = old.clone();
            let mut removal = Removal::default();
            let next = db.next_sequence()?;
            match (change.apply(&mut key), removal.state_mut(db, id)?) {
                (TokenFate::Keep, _) | (_, None) => {}
                (TokenFate::Revoke, Some(state)) => {
                    state.revoke_all(next);
                    schedule_purge(&mut removal.batch, &layout::tokens_of_key(id));
                }
                (TokenFate::ExpireBy(at), Some(state)) => state.cap(next, at),
            }
            replace_key(&mut removal.batch, &old, &key)?;
            Ok((Some((key, Vec::new())), Some(removal.into_batch()?)))
        })
    }

    pub(super) fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.write(|db| {
            let Some(key) = db.api_key(id)? else {
                return Ok((None, None));
            };
            let mut removal = Removal::default();
            db.remove_key_and_its_tokens(&mut removal, &key);
            Ok((Some((key, Vec::new())), Some(removal.into_batch()?)))
        })
    }

    /// Stages the removal of `key`: its tokens are revoked with it, and purged later.
    fn remove_key_and_its_tokens(&self, removal: &mut Removal, key: &ApiKey) {
        remove_key(&mut removal.batch, key);
        removal.remove_state(&key.id);
        schedule_purge(&mut removal.batch, &layout::tokens_of_key(&key.id));
    }

    pub(super) fn revoke_user(
        &self,
        user: &UserId,
        disposal: KeyDisposal,
    ) -> Result<Vec<SecretDigest>, StoreError> {
        self.write(|db| {
            let mut removal = Removal::default();
            let next = db.next_sequence()?;
            removal
                .batch
                .insert(layout::user_revoked(user), next.to_be_bytes().to_vec());
            schedule_purge(&mut removal.batch, &layout::tokens_of_user(user));
            for entry in db.tree.scan_prefix(layout::keys_of_user(user)) {
                let (_, id) = entry.map_err(backend)?;
                let Some(key) = db.api_key(&key_id_of(&id)?)? else {
                    continue;
                };
                match disposal {
                    KeyDisposal::Delete => db.remove_key_and_its_tokens(&mut removal, &key),
                    KeyDisposal::Deactivate => {
                        let mut inactive = key.clone();
                        inactive.active = false;
                        replace_key(&mut removal.batch, &key, &inactive)?;
                        if let Some(state) = removal.state_mut(db, &key.id)? {
                            state.revoke_all(next);
                        }
                    }
                }
            }
            Ok((Vec::new(), Some(removal.into_batch()?)))
        })
    }

    /// Purges up to `limit` entries' worth, in writes of at most
    /// [`PURGE_CHUNK`] each: the write lock is released between them, so
    /// other writes wait for one chunk at most, never for the whole purge.
    pub(super) fn purge_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        let mut total = Purged::default();
        while total.examined < limit {
            let chunk = PURGE_CHUNK.min(limit - total.examined);
            let purged = self.write(|db| db.stage_purge(now, chunk))?;
            let done = purged.examined < chunk;
            total.add(purged);
            if done {
                break;
            }
        }
        Ok(total)
    }

    fn stage_purge(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<(Purged, Option<Batch>), StoreError> {
        let mut removal = Removal::default();
        let mut removed_keys = HashSet::new();
        let mut purged = Purged::default();
        for entry in self.tree.range(layout::expired_until(now)).take(limit) {
            let (index_key, _) = entry.map_err(backend)?;
            purged.examined += 1;
            removal.batch.remove(index_key.clone());
            let Some((what, id)) = layout::parse_expiry(&index_key) else {
                continue;
            };
            match what {
                layout::EXPIRES_TOKEN => {
                    let Some(stamped) = self.stamped_by_id(&TokenId::from(id))? else {
                        continue;
                    };
                    let raw = stamped.token.clone();
                    match self.live(Some(&removal), stamped)? {
                        Some(token) if token.is_expired_at(now) => {
                            removal.token(&raw);
                            removal.live_token_removed(self, &raw)?;
                        }
                        Some(_) => {}
                        // Revoked: a pending purge would remove it too.
                        None => removal.token(&raw),
                    }
                }
                layout::EXPIRES_KEY => {
                    let id = ApiKeyId::from(id);
                    if let Some(key) = self.api_key(&id)? {
                        if key.is_expired_at(now) && removed_keys.insert(id.clone()) {
                            self.remove_key_and_its_tokens(&mut removal, &key);
                            purged.api_keys += 1;
                            purged.changed_keys.push(id);
                        }
                    }
                }
                layout::EXPIRES_RETIRED_SECRET => {
                    let id = ApiKeyId::from(id);
                    if removed_keys.contains(&id) {
                        continue;
                    }
                    if let Some(key) = self.api_key(&id)? {
                        if key.retired.as_ref().is_some_and(|r| r.valid_until <= now) {
                            let mut current = key.clone();
                            current.retired = None;
                            replace_key(&mut removal.batch, &key, &current)?;
                            purged.changed_keys.push(id);
                        }
                    }
                }
                _ => {}
            }
        }
        // What budget is left goes to the tokens revocations left behind.
        if purged.examined < limit {
            purged.examined +=
                revocations::pending_purge(self, &mut removal, limit - purged.examined)?;
        }
        purged.tokens = std::mem::take(&mut removal.digests);
        let batch = (purged.examined > 0)
            .then(|| removal.into_batch())
            .transpose()?;
        Ok((purged, batch))
    }
}
