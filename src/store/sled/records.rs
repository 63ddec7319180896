//! Synchronous reads and writes on the tree; [`super::SledStore`] runs them off the
//! async threads.
//!
//! Writes hold `write_lock`: a write reads what it needs (a key's tokens, say), then
//! applies one atomic batch. sled transactions cannot scan, and every writer to this
//! tree goes through the lock, so check-then-batch under it cannot interleave with
//! another write. Readers take no lock: a batch is applied atomically.

use std::{
    collections::HashSet,
    sync::{Mutex, MutexGuard},
};

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use sled::{Batch, Tree};

use super::{backend, layout};
use crate::{
    secret::Digest,
    store::{KeyDisposal, Page, Purged, StoreError, StoreErrorKind},
    ApiKey, ApiKeyId, KeyChange, Scope, Token, TokenId, UserId,
};

pub(super) struct Inner {
    tree: Tree,
    write_lock: Mutex<()>,
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::new(StoreErrorKind::Corrupt, e))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::new(StoreErrorKind::Corrupt, e))
}

fn digest_of(bytes: &[u8]) -> Result<Digest, StoreError> {
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::from_kind(StoreErrorKind::Corrupt))?;
    Ok(Digest::from_bytes(raw))
}

fn key_id_of(bytes: &[u8]) -> Result<ApiKeyId, StoreError> {
    std::str::from_utf8(bytes)
        .map(ApiKeyId::from)
        .map_err(|e| StoreError::new(StoreErrorKind::Corrupt, e))
}

fn conflict() -> StoreError {
    StoreError::from_kind(StoreErrorKind::Conflict)
}

/// Stages a token and all its index entries.
fn put_token(batch: &mut Batch, token: &Token) -> Result<(), StoreError> {
    let digest = token.digest.as_bytes().to_vec();
    batch.insert(layout::token(&token.digest), encode(token)?);
    batch.insert(layout::token_id(&token.id), digest.clone());
    if let Some(user) = &token.user_id {
        batch.insert(
            layout::token_by_user(user, token.created, &token.id),
            digest.clone(),
        );
    }
    if let Some(key_id) = &token.api_key_id {
        batch.insert(layout::token_by_key(key_id, &token.id), digest.clone());
    }
    let expiry = layout::expiry(token.expires, layout::EXPIRES_TOKEN, token.id.as_str());
    batch.insert(expiry, digest);
    Ok(())
}

/// Stages the removal of a token and all its index entries.
fn remove_token(batch: &mut Batch, token: &Token) {
    batch.remove(layout::token(&token.digest));
    batch.remove(layout::token_id(&token.id));
    if let Some(user) = &token.user_id {
        batch.remove(layout::token_by_user(user, token.created, &token.id));
    }
    if let Some(key_id) = &token.api_key_id {
        batch.remove(layout::token_by_key(key_id, &token.id));
    }
    batch.remove(layout::expiry(
        token.expires,
        layout::EXPIRES_TOKEN,
        token.id.as_str(),
    ));
}

/// Stages a key and all its index entries.
fn put_key(batch: &mut Batch, key: &ApiKey) -> Result<(), StoreError> {
    let id = key.id.as_str().as_bytes();
    batch.insert(layout::api_key(&key.id), encode(key)?);
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

/// Tokens staged for removal in one batch, each once.
#[derive(Default)]
struct Removal {
    batch: Batch,
    digests: Vec<Digest>,
    seen: HashSet<[u8; 32]>,
}

impl Removal {
    fn token(&mut self, token: &Token) {
        if self.seen.insert(*token.digest.as_bytes()) {
            remove_token(&mut self.batch, token);
            self.digests.push(token.digest);
        }
    }
}

impl Inner {
    pub(super) fn new(tree: Tree) -> Self {
        Self {
            tree,
            write_lock: Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guard protects no data, only ordering: a poisoned lock is still usable.
        self.write_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get<T: DeserializeOwned>(&self, key: Vec<u8>) -> Result<Option<T>, StoreError> {
        match self.tree.get(key).map_err(backend)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.tree.apply_batch(batch).map_err(backend)?;
        self.tree.flush().map_err(backend)?;
        Ok(())
    }

    /// Tokens whose digests are the values under `prefix`.
    fn tokens_under(&self, prefix: Vec<u8>, page: Option<Page>) -> Result<Vec<Token>, StoreError> {
        let (skip, take) = page.map_or((0, usize::MAX), |p| (p.offset, p.limit));
        let mut tokens = Vec::new();
        for entry in self.tree.scan_prefix(prefix).skip(skip).take(take) {
            let (_, digest) = entry.map_err(backend)?;
            // An index entry without its record is skipped, not an error: the record
            // and its indexes are written together, so this only follows a purge race.
            if let Some(token) = self.token(&digest_of(&digest)?)? {
                tokens.push(token);
            }
        }
        Ok(tokens)
    }

    pub(super) fn token(&self, digest: &Digest) -> Result<Option<Token>, StoreError> {
        self.get(layout::token(digest))
    }

    pub(super) fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        match self.tree.get(layout::token_id(id)).map_err(backend)? {
            Some(digest) => self.token(&digest_of(&digest)?),
            None => Ok(None),
        }
    }

    pub(super) fn tokens_of_user(
        &self,
        user: &UserId,
        page: Page,
    ) -> Result<Vec<Token>, StoreError> {
        self.tokens_under(layout::tokens_of_user(user), Some(page))
    }

    pub(super) fn api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        self.get(layout::api_key(id))
    }

    pub(super) fn api_key_by_digest(&self, digest: &Digest) -> Result<Option<ApiKey>, StoreError> {
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
        self.keys_under(layout::keys_of_user(user), Some(page))
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
        let _guard = self.lock();
        self.ensure_new(token)?;
        let mut batch = Batch::default();
        put_token(&mut batch, token)?;
        self.commit(batch)
    }

    pub(super) fn mint_token(
        &self,
        token: &Token,
        key_digest: &Digest,
    ) -> Result<bool, StoreError> {
        let Some(key_id) = &token.api_key_id else {
            return Ok(false);
        };
        let _guard = self.lock();
        let Some(mut key) = self.api_key(key_id)? else {
            return Ok(false);
        };
        let owner_matches = token.user_id.as_ref() == Some(&key.user_id);
        if !key.active
            || key.is_expired_at(token.created)
            || !key.accepts(key_digest, token.created)
            || !owner_matches
        {
            return Ok(false);
        }
        self.ensure_new(token)?;
        key.last_use = Some(token.created);
        let mut batch = Batch::default();
        // Only the record changes: last_use is in no index.
        batch.insert(layout::api_key(&key.id), encode(&key)?);
        put_token(&mut batch, token)?;
        self.commit(batch)?;
        Ok(true)
    }

    pub(super) fn add_token_scopes(
        &self,
        id: &TokenId,
        scopes: &[Scope],
    ) -> Result<Option<Token>, StoreError> {
        let _guard = self.lock();
        let Some(mut token) = self.token_by_id(id)? else {
            return Ok(None);
        };
        token.scopes.extend(scopes.iter().cloned());
        let mut batch = Batch::default();
        batch.insert(layout::token(&token.digest), encode(&token)?);
        self.commit(batch)?;
        Ok(Some(token))
    }

    pub(super) fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let _guard = self.lock();
        let Some(token) = self.token_by_id(id)? else {
            return Ok(None);
        };
        let mut batch = Batch::default();
        remove_token(&mut batch, &token);
        self.commit(batch)?;
        Ok(Some(token))
    }

    pub(super) fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let _guard = self.lock();
        if self
            .tree
            .contains_key(layout::api_key(&key.id))
            .map_err(backend)?
            || self
                .tree
                .contains_key(layout::key_digest(&key.digest))
                .map_err(backend)?
        {
            return Err(conflict());
        }
        let mut batch = Batch::default();
        put_key(&mut batch, key)?;
        self.commit(batch)
    }

    /// Stages the removal of every token minted from `key_id`.
    fn remove_tokens_of_key(
        &self,
        removal: &mut Removal,
        key_id: &ApiKeyId,
    ) -> Result<(), StoreError> {
        for token in self.tokens_under(layout::tokens_of_key(key_id), None)? {
            removal.token(&token);
        }
        Ok(())
    }

    pub(super) fn modify_api_key(
        &self,
        id: &ApiKeyId,
        change: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<Digest>)>, StoreError> {
        let _guard = self.lock();
        let Some(old) = self.api_key(id)? else {
            return Ok(None);
        };
        let mut key = old.clone();
        let revoke_tokens = change.apply(&mut key);
        let mut removal = Removal::default();
        if revoke_tokens {
            self.remove_tokens_of_key(&mut removal, id)?;
        }
        replace_key(&mut removal.batch, &old, &key)?;
        self.commit(removal.batch)?;
        Ok(Some((key, removal.digests)))
    }

    pub(super) fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<Digest>)>, StoreError> {
        let _guard = self.lock();
        let Some(key) = self.api_key(id)? else {
            return Ok(None);
        };
        let mut removal = Removal::default();
        self.remove_tokens_of_key(&mut removal, id)?;
        remove_key(&mut removal.batch, &key);
        self.commit(removal.batch)?;
        Ok(Some((key, removal.digests)))
    }

    pub(super) fn revoke_user(
        &self,
        user: &UserId,
        disposal: KeyDisposal,
    ) -> Result<Vec<Digest>, StoreError> {
        let _guard = self.lock();
        let mut removal = Removal::default();
        for token in self.tokens_under(layout::tokens_of_user(user), None)? {
            removal.token(&token);
        }
        let keys = self.keys_under(layout::keys_of_user(user), None)?;
        for key in keys {
            match disposal {
                KeyDisposal::Delete => remove_key(&mut removal.batch, &key),
                KeyDisposal::Deactivate => {
                    let mut inactive = key.clone();
                    inactive.active = false;
                    replace_key(&mut removal.batch, &key, &inactive)?;
                }
            }
        }
        self.commit(removal.batch)?;
        Ok(removal.digests)
    }

    pub(super) fn purge_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Purged, StoreError> {
        let _guard = self.lock();
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
                    if let Some(token) = self.token_by_id(&TokenId::from(id))? {
                        if token.is_expired_at(now) {
                            removal.token(&token);
                        }
                    }
                }
                layout::EXPIRES_KEY => {
                    let id = ApiKeyId::from(id);
                    if let Some(key) = self.api_key(&id)? {
                        if key.is_expired_at(now) && removed_keys.insert(id.clone()) {
                            self.remove_tokens_of_key(&mut removal, &id)?;
                            remove_key(&mut removal.batch, &key);
                            purged.api_keys += 1;
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
                        }
                    }
                }
                _ => {}
            }
        }
        if purged.examined > 0 {
            self.commit(removal.batch)?;
        }
        purged.tokens = removal.digests;
        Ok(purged)
    }
}
