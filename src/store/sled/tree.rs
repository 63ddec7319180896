//! [`Inner`]: one open sled database, its raw reads, and the one way to write
//! to it; and the staging of a token's record with its indexes. Records,
//! revocations and upgrades build on it.
//!
//! Writes hold `write_lock` while they read what they need (a key's tokens, say) and
//! apply one atomic batch. sled transactions cannot scan, and every writer to this
//! tree goes through the lock, so check-then-batch under it cannot interleave with
//! another write. The sync that makes a batch durable runs after the lock is
//! released, shared by every batch applied meanwhile ([`GroupCommit`]). Readers take
//! no lock: a batch is applied atomically.

use std::{
    fs::File,
    path::Path,
    sync::{Mutex, MutexGuard},
};

use chrono::{DateTime, Utc};
use sled::{Batch, Db, Tree};

use super::{
    backend,
    encoding::{Stamped, Stored},
    group_commit::GroupCommit,
    layout, SledConfig,
};
use crate::{
    ids::ApiKeyId,
    secret::SecretDigest,
    store::{StoreError, StoreErrorKind},
    token::Token,
};

/// Name of the sled tree scopegate keeps its records in.
const TREE: &str = "scopegate";
/// sled's log file inside its directory: what a sync must reach.
const LOG_FILE: &str = "db";

pub(super) struct Inner {
    pub(super) tree: Tree,
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

/// Stages a token, written with `sequence`, and all its index entries.
pub(super) fn put_token(batch: &mut Batch, token: &Token, sequence: u64) -> Result<(), StoreError> {
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
pub(super) fn remove_token(batch: &mut Batch, token: &Token) {
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
    pub(super) fn settled(&self) -> Result<(), StoreError> {
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

    /// The token with `digest`, as stored, revoked or not.
    pub(super) fn stamped(&self, digest: &SecretDigest) -> Result<Option<Stamped>, StoreError> {
        self.get(layout::token(digest))
    }

    /// A sequence number above every one given out before and below every
    /// one given out after, across restarts and crashes (sled's id generator
    /// persists ahead of what it hands out): for a token, or for a revocation
    /// mark between the tokens before it and those after.
    pub(super) fn next_sequence(&self) -> Result<u64, StoreError> {
        self.db.generate_id().map_err(backend)
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
