//! Synchronous reads and writes on one open database; [`super::SledStore`] runs
//! them off the async threads.
//!
//! Writes hold `write_lock` while they read what they need (a key's tokens, say) and
//! apply one atomic batch. sled transactions cannot scan, and every writer to this
//! tree goes through the lock, so check-then-batch under it cannot interleave with
//! another write. The sync that makes a batch durable runs after the lock is
//! released, shared by every batch applied meanwhile ([`GroupCommit`]). Readers take
//! no lock: a batch is applied atomically.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    path::Path,
    sync::{Mutex, MutexGuard},
};

use chrono::{DateTime, Utc};
use sled::{Batch, Db, Tree};

use super::{
    backend,
    encoding::Stored,
    group_commit::GroupCommit,
    layout,
    revocations::{self, KeyState, Stamped},
    upgrade, SledConfig,
};
use crate::api_key::KeyChange;
use crate::{
    api_key::TokenFate,
    secret::SecretDigest,
    store::{KeyDisposal, Page, Purged, StoreError, StoreErrorKind},
    ApiKey, ApiKeyId, Scope, Token, TokenId, UserId,
};

/// Index entries one purge write handles: what bounds how long a purge holds
/// the write lock (a few milliseconds).
const PURGE_CHUNK: usize = 128;

/// Name of the sled tree scopegate keeps its records in.
const TREE: &str = "scopegate";
/// sled's log file inside its directory: what a sync must reach.
const LOG_FILE: &str = "db";

pub(super) struct Inner {
    tree: Tree,
    /// Kept so dropping `Inner` closes the database and releases its file lock;
    /// its id generator gives tokens their sequence (see `revocations`).
    db: Db,
    /// sled's log, opened again to `fdatasync` it: sled's own flush only issues
    /// `sync_file_range` on Linux, which does not reach stable storage.
    log: File,
    write_lock: Mutex<()>,
    commits: GroupCommit,
}

pub(super) fn digest_of(bytes: &[u8]) -> Result<SecretDigest, StoreError> {
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::from_kind(StoreErrorKind::Corrupt))?;
    Ok(SecretDigest::from_bytes(raw))
}

pub(super) fn key_id_of(bytes: &[u8]) -> Result<ApiKeyId, StoreError> {
    std::str::from_utf8(bytes)
        .map(ApiKeyId::from)
        .map_err(|e| StoreError::new(StoreErrorKind::Corrupt, e))
}

fn conflict() -> StoreError {
    StoreError::from_kind(StoreErrorKind::Conflict)
}

/// Stages a token, written with `sequence`, and all its index entries.
fn put_token(batch: &mut Batch, token: &Token, sequence: u64) -> Result<(), StoreError> {
    let digest = token.digest.as_bytes().to_vec();
    let record = Stamped {
        token: token.clone(),
        sequence,
    };
    batch.insert(layout::token(&token.digest), record.encode()?);
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

/// Tokens staged for removal in one batch, each once, and the key states the
/// batch changes.
#[derive(Default)]
pub(super) struct Removal {
    pub(super) batch: Batch,
    digests: Vec<SecretDigest>,
    seen: HashSet<[u8; 32]>,
    /// Key states as this batch leaves them (`None`: removed), written at its end.
    states: HashMap<ApiKeyId, Option<KeyState>>,
}

impl Removal {
    pub(super) fn token(&mut self, token: &Token) {
        if self.seen.insert(*token.digest.as_bytes()) {
            remove_token(&mut self.batch, token);
            self.digests.push(token.digest);
        }
    }

    /// The state of key `id` as this batch leaves it, if the batch changes it.
    pub(super) fn staged_state(&self, id: &ApiKeyId) -> Option<Option<&KeyState>> {
        self.states.get(id).map(Option::as_ref)
    }

    /// Key `id`'s state, staged for change; `None` if there is no such key.
    fn state_mut(
        &mut self,
        db: &Inner,
        id: &ApiKeyId,
    ) -> Result<Option<&mut KeyState>, StoreError> {
        if !self.states.contains_key(id) {
            let state = db.key_state(id)?;
            self.states.insert(id.clone(), state);
        }
        Ok(self.states.get_mut(id).and_then(Option::as_mut))
    }

    /// Stages the removal of key `id`'s state: none of its tokens is live.
    fn remove_state(&mut self, id: &ApiKeyId) {
        self.states.insert(id.clone(), None);
    }

    /// Counts a live token of key `id` removed.
    fn live_token_removed(&mut self, db: &Inner, token: &Token) -> Result<(), StoreError> {
        if let Some(key) = &token.api_key_id {
            if let Some(state) = self.state_mut(db, key)? {
                state.live = state.live.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// The batch, with the key states written into it.
    fn into_batch(mut self) -> Result<Batch, StoreError> {
        for (id, state) in self.states {
            match state {
                Some(state) => self.batch.insert(layout::key_state(&id), state.encode()?),
                None => self.batch.remove(layout::key_state(&id)),
            }
        }
        Ok(self.batch)
    }
}

/// Stages a purge of the tokens indexed under `index` that a revocation left
/// behind (see `revocations`).
fn schedule_purge(batch: &mut Batch, index: &[u8]) {
    batch.insert(layout::pending_purge(index), Vec::new());
}

impl Inner {
    /// Opens (or creates) the database in `path` and makes its files durable.
    pub(super) fn open(path: &Path, config: &SledConfig) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_bytes())
            .open()
            .map_err(backend)?;
        let tree = db.open_tree(TREE).map_err(backend)?;
        let log = File::open(path.join(LOG_FILE)).map_err(backend)?;
        let inner = Self {
            tree,
            db,
            log,
            write_lock: Mutex::new(()),
            commits: GroupCommit::default(),
        };
        inner.sync()?;
        // The directory entries of files sled just created.
        sync_dir(path)?;
        upgrade::user_indexes(&inner)?;
        upgrade::key_states(&inner)?;
        Ok(inner)
    }

    /// Writes a marker and waits for it to reach stable storage: the test a
    /// reopened database must pass before it serves.
    pub(super) fn probe(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(|_| {
            let mut batch = Batch::default();
            batch.insert(layout::probe(), layout::time(now).to_vec());
            Ok(((), Some(batch)))
        })
    }

    /// Everything sled has applied, onto stable storage.
    fn sync(&self) -> Result<(), StoreError> {
        self.tree.flush().map_err(backend)?;
        self.log.sync_data().map_err(backend)
    }

    /// Runs a write: `stage` reads under the write lock and returns its answer with
    /// the batch to apply (`None`: nothing to change). Returns once the batch, and
    /// everything applied before it, is on stable storage.
    pub(super) fn write<T>(
        &self,
        stage: impl FnOnce(&Self) -> Result<(T, Option<Batch>), StoreError>,
    ) -> Result<T, StoreError> {
        let (answer, ticket) = {
            let _guard = self.lock();
            let (answer, batch) = stage(self)?;
            let ticket = match batch {
                Some(batch) => {
                    self.tree.apply_batch(batch).map_err(backend)?;
                    self.commits.applied()
                }
                None => self.commits.latest(),
            };
            (answer, ticket)
        };
        self.commits.wait_durable(ticket, || self.sync())?;
        Ok(answer)
    }

    /// Waits until every write applied so far is durable, so a management read
    /// never answers from a write that may still fail (a "not found" for a
    /// revocation that did not reach the disk).
    fn settled(&self) -> Result<(), StoreError> {
        self.commits
            .wait_durable(self.commits.latest(), || self.sync())
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The guard protects no data, only ordering: a poisoned lock is still usable.
        self.write_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first `limit` entries under `prefix`, in key order.
    pub(super) fn entries_under(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .take(limit)
            .map(|entry| entry.map_err(backend))
            .collect()
    }

    /// Up to `limit` entries from `start` on that are under `prefix`, in key order.
    pub(super) fn entries_from(
        &self,
        start: &[u8],
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.tree.range(start..).take(limit) {
            let (key, value) = entry.map_err(backend)?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key, value));
        }
        Ok(out)
    }

    pub(super) fn get_raw(&self, key: Vec<u8>) -> Result<Option<sled::IVec>, StoreError> {
        self.tree.get(key).map_err(backend)
    }

    pub(super) fn get<T: Stored>(&self, key: Vec<u8>) -> Result<Option<T>, StoreError> {
        match self.tree.get(key).map_err(backend)? {
            Some(bytes) => T::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

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

    /// The token with `digest`, as stored, revoked or not.
    pub(super) fn stamped(&self, digest: &SecretDigest) -> Result<Option<Stamped>, StoreError> {
        self.get(layout::token(digest))
    }

    /// The live token with `digest`: what every read answers.
    pub(super) fn token(&self, digest: &SecretDigest) -> Result<Option<Token>, StoreError> {
        match self.stamped(digest)? {
            Some(stamped) => self.live(None, stamped),
            None => Ok(None),
        }
    }

    /// A sequence number above every one given out before and below every
    /// one given out after, across restarts and crashes (sled's id generator
    /// persists ahead of what it hands out): for a token, or for a revocation
    /// mark between the tokens before it and those after.
    fn next_sequence(&self) -> Result<u64, StoreError> {
        self.db.generate_id().map_err(backend)
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

/// Makes the entries of `dir` durable (new files in it survive a power cut).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(backend)?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
