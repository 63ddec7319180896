//! Upgrades of a database written by an earlier scopegate, run when it opens.

use sled::Batch;

use std::path::Path;

use super::{
    encoding::{KeyState, Stored},
    layout,
    tree::{digest_of, key_id_of, Inner},
    SledConfig,
};
use crate::{api_key::ApiKey, store::StoreError};

/// Opens the database in `path`, upgraded to the current layout.
pub(super) fn open(path: &Path, config: &SledConfig) -> Result<Inner, StoreError> {
    let inner = Inner::open(path, config)?;
    user_indexes(&inner)?;
    key_states(&inner)?;
    Ok(inner)
}

/// Index entries moved per atomic batch: bounds one step's memory. A crash
/// between batches loses nothing; the next open moves the rest.
const BATCH: usize = 1024;

/// Moves the per-user indexes of a database written before they held the
/// creation time to the microsecond. Those held milliseconds, so credentials
/// created in one millisecond were listed in id order instead of oldest first.
pub(super) fn user_indexes(db: &Inner) -> Result<(), StoreError> {
    user_indexes_in_batches_of(db, BATCH)
}

fn user_indexes_in_batches_of(db: &Inner, batch: usize) -> Result<(), StoreError> {
    let (tokens, keys) = (
        layout::legacy_tokens_by_user(),
        layout::legacy_keys_by_user(),
    );
    if db.entries_under(&tokens, 1)?.is_empty() && db.entries_under(&keys, 1)?.is_empty() {
        return Ok(());
    }
    // One-time, but long for a large database (it rewrites every index entry):
    // say why the open is slow.
    tracing::info!("moving sled's per-user indexes to microsecond order, once");
    let started = std::time::Instant::now();
    let moved = move_entries(db, &tokens, batch, |db, digest| {
        let token = db.token(&digest_of(digest)?)?;
        Ok(token.and_then(|t| {
            let user = t.user_id.as_ref()?;
            Some(layout::token_by_user(user, t.created, &t.id))
        }))
    })? + move_entries(db, &keys, batch, |db, id| {
        let key = db.api_key(&key_id_of(id)?)?;
        Ok(key.map(|k| layout::key_by_user(&k.user_id, k.created, &k.id)))
    })?;
    tracing::info!(
        entries = moved,
        seconds = started.elapsed().as_secs_f64(),
        "moved sled's per-user indexes"
    );
    Ok(())
}

/// Gives every key of a database written before key states one: none of its
/// tokens revoked (they carry sequence 0), and as many live as it has stored.
/// Keys come first in the tree's order of families (`k` before `v`), so the
/// check is one read per key; the count, one scan per key without a state.
pub(super) fn key_states(db: &Inner) -> Result<(), StoreError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let start = after.map_or_else(layout::all_api_keys, |k| [k.as_slice(), &[0]].concat());
        let keys = db.entries_from(&start, &layout::all_api_keys(), BATCH)?;
        let Some((last, _)) = keys.last() else {
            return Ok(());
        };
        after = Some(last.to_vec());
        db.write(|db| {
            let mut batch = Batch::default();
            let mut given = 0;
            for (_, record) in &keys {
                let key = ApiKey::decode(record)?;
                if db.key_state(&key.id)?.is_some() {
                    continue;
                }
                given += 1;
                let live = db
                    .entries_under(&layout::tokens_of_key(&key.id), usize::MAX)?
                    .len();
                let state = KeyState {
                    live: live as u64,
                    ..KeyState::default()
                };
                batch.insert(layout::key_state(&key.id), state.encode()?);
            }
            Ok(((), (given > 0).then_some(batch)))
        })?;
        if keys.len() < BATCH {
            return Ok(());
        }
    }
}

/// Replaces every entry under `legacy` by one under the key `current` gives
/// for its value, with the same value; drops an entry whose record is gone.
/// Moves `size` entries per atomic, durable batch. Returns how many it moved.
fn move_entries(
    db: &Inner,
    legacy: &[u8],
    size: usize,
    current: impl Fn(&Inner, &[u8]) -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let moved = db.write(|db| {
            let entries = db.entries_under(legacy, size)?;
            let mut batch = Batch::default();
            for (old, value) in &entries {
                if let Some(new) = current(db, value)? {
                    batch.insert(new, value);
                }
                batch.remove(old);
            }
            Ok((entries.len(), (!entries.is_empty()).then_some(batch)))
        })?;
        total += moved;
        if moved < size {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;
    use crate::{
        api_key::ApiKey,
        ids::{ApiKeyId, TokenId, UserId},
        secret::SecretDigest,
        store::{Page, SledConfig},
        token::Token,
    };

    /// An index key as databases before the microsecond index held it: family,
    /// length-prefixed user, milliseconds with the sign bit flipped, id.
    fn legacy(family: u8, user: &UserId, created: DateTime<Utc>, id: &str) -> Vec<u8> {
        let mut k = vec![family];
        k.extend_from_slice(&(user.as_str().len() as u32).to_be_bytes());
        k.extend_from_slice(user.as_str().as_bytes());
        k.extend_from_slice(&((created.timestamp_millis() as u64) ^ (1 << 63)).to_be_bytes());
        k.extend_from_slice(id.as_bytes());
        k
    }

    fn key(id: &str, user: &UserId, created: DateTime<Utc>, n: u8) -> ApiKey {
        ApiKey {
            id: ApiKeyId::from(id),
            user_id: user.clone(),
            name: id.into(),
            scope: None,
            token_duration: None,
            active: true,
            locked: false,
            created,
            last_use: None,
            expires: None,
            digest: SecretDigest::from_bytes([n; 32]),
            start: String::new(),
            retired: None,
        }
    }

    fn token(id: &str, user: &UserId, created: DateTime<Utc>, n: u8) -> Token {
        let digest = SecretDigest::from_bytes([n | 0x80; 32]);
        let mut token = Token::new(
            TokenId::from(id),
            digest,
            created,
            created + TimeDelta::days(1),
        );
        token.user_id = Some(user.clone());
        token
    }

    /// Keys and tokens of `bob` created a microsecond apart, ids in descending
    /// order (id order is the reverse of creation order), indexed as a database
    /// before the microsecond index held them.
    const IDS: [&str; 5] = ["e", "d", "c", "b", "a"];

    fn earlier_database(dir: &std::path::Path, bob: &UserId) -> Inner {
        let start = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let at = |i: usize| start + TimeDelta::microseconds(i as i64);
        let db = Inner::open(dir, &SledConfig::default()).unwrap();
        for (i, id) in IDS.iter().enumerate() {
            db.insert_api_key(&key(id, bob, at(i), i as u8)).unwrap();
            db.insert_token(&token(id, bob, at(i), i as u8)).unwrap();
        }
        db.write(|db| {
            let mut batch = Batch::default();
            let families = [
                (layout::keys_of_user(bob), b'o'),
                (layout::tokens_of_user(bob), b'u'),
            ];
            for (prefix, family) in families {
                let entries = db.entries_under(&prefix, usize::MAX)?;
                assert_eq!(entries.len(), IDS.len());
                for ((current, value), (i, id)) in entries.iter().zip(IDS.iter().enumerate()) {
                    batch.remove(current);
                    batch.insert(legacy(family, bob, at(i), id), value);
                }
            }
            Ok(((), Some(batch)))
        })
        .unwrap();
        db
    }

    /// Every entry moved, and both lists oldest first.
    fn assert_upgraded(db: &Inner, bob: &UserId) {
        for legacy in [
            layout::legacy_keys_by_user(),
            layout::legacy_tokens_by_user(),
        ] {
            assert!(db.entries_under(&legacy, 1).unwrap().is_empty());
        }
        let keys = db.api_keys_of_user(bob, Page::default()).unwrap();
        let keys: Vec<_> = keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(keys, IDS);
        let tokens = db.tokens_of_user(bob, Page::default()).unwrap();
        let tokens: Vec<_> = tokens.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(tokens, IDS);
    }

    #[test]
    fn an_earlier_database_lists_credentials_of_one_millisecond_oldest_first_once_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let bob = UserId::from("bob");
        drop(earlier_database(dir.path(), &bob));
        let db = open(dir.path(), &SledConfig::default()).unwrap();
        assert_upgraded(&db, &bob);
        // The moved entries are the ones a delete removes.
        db.delete_api_key(&ApiKeyId::from("c")).unwrap().unwrap();
        let keys = db.api_keys_of_user(&bob, Page::default()).unwrap();
        let keys: Vec<_> = keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(keys, ["e", "d", "b", "a"]);
    }

    #[test]
    fn entries_move_in_several_batches_and_a_record_gone_drops_its_entry() {
        let dir = tempfile::tempdir().unwrap();
        let bob = UserId::from("bob");
        let db = earlier_database(dir.path(), &bob);
        // A legacy entry whose key record is gone, as a purge race could leave.
        let orphan = legacy(b'o', &bob, DateTime::UNIX_EPOCH, "gone");
        db.write(|_| {
            let mut batch = Batch::default();
            batch.insert(orphan, &b"gone"[..]);
            Ok(((), Some(batch)))
        })
        .unwrap();
        user_indexes_in_batches_of(&db, 2).unwrap();
        assert_upgraded(&db, &bob);
    }
}
