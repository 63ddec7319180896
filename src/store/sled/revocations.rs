//! Revocations whose cost does not grow with the tokens they revoke.
//!
//! Each token is stamped with a sequence number when it is written, from sled's
//! id generator: increasing, across restarts and crashes too.
//! Revoking every token of a key or of a user is then one small write:
//! - a key's [`KeyState`] says below which sequence its tokens are revoked (a
//!   deactivation, a rotation without grace, a scope change), and caps the
//!   expiry of tokens up to a sequence (an earlier key expiry); a deleted key
//!   has no state, and no token of it is live;
//! - a user's marker (`layout::user_revoked`) says below which sequence their
//!   tokens are revoked.
//!
//! Every read checks a token against them ([`Inner::live`]), so a revoked token
//! is never answered, even while its record waits to be purged. The revocation
//! leaves a marker, and [`purge_expired`](crate::store::TokenStore::purge_expired)
//! (the [`Sweeper`](crate::Sweeper)'s call) spends what its budget leaves on
//! the marked records ([`pending_purge`]): chunk by chunk, each its own write,
//! so the write lock is never held for long, and a chunk only ever removes
//! tokens the checks already refuse. A cache in front forgets them all through
//! the key's or user's tag, in one step.

use chrono::{DateTime, Utc};

use std::collections::{HashMap, HashSet};

use sled::Batch;

use super::{
    encoding::{KeyState, Stamped, Stored},
    layout,
    tree::{digest_of, remove_token, Inner},
};
use crate::{
    ids::{ApiKeyId, UserId},
    secret::SecretDigest,
    store::StoreError,
    token::Token,
};

/// How many expiry caps a key keeps for its older tokens. Past it, the two
/// oldest merge into the earlier one: a token may then expire earlier than its
/// cap, never later.
const MAX_CAPS: usize = 4;

impl KeyState {
    /// The state of a key created when `next` is the next token's sequence:
    /// no older token, whatever it claims, is one of its tokens.
    pub(super) fn new(next: u64) -> Self {
        Self {
            revoked_below: next,
            ..Self::default()
        }
    }

    /// Whether the token written with `sequence` is revoked.
    pub(super) fn revokes(&self, sequence: u64) -> bool {
        sequence < self.revoked_below
    }

    /// `expires`, capped for the token written with `sequence`.
    pub(super) fn capped(&self, sequence: u64, expires: DateTime<Utc>) -> DateTime<Utc> {
        self.caps
            .iter()
            .filter(|(through, _)| sequence <= *through)
            .fold(expires, |expires, (_, at)| expires.min(*at))
    }

    /// Revokes every token stored so far (`next` is the next token's sequence).
    pub(super) fn revoke_all(&mut self, next: u64) {
        *self = Self::new(next);
    }

    /// Makes every token up to sequence `through` expire by `at` (`through`
    /// is above every token stored so far).
    pub(super) fn cap(&mut self, through: u64, at: DateTime<Utc>) {
        // A cap at `at` or later on older tokens says nothing this one does not.
        self.caps.retain(|(_, earlier)| *earlier < at);
        self.caps.push((through, at));
        if self.caps.len() > MAX_CAPS {
            let (_, oldest) = self.caps.remove(0);
            self.caps[0].1 = self.caps[0].1.min(oldest);
        }
    }
}

/// Tokens staged for removal in one batch, each once, and the key states the
/// batch changes.
#[derive(Default)]
pub(super) struct Removal {
    pub(super) batch: Batch,
    pub(super) digests: Vec<SecretDigest>,
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
    pub(super) fn state_mut(
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
    pub(super) fn remove_state(&mut self, id: &ApiKeyId) {
        self.states.insert(id.clone(), None);
    }

    /// Counts a live token of key `id` removed.
    pub(super) fn live_token_removed(
        &mut self,
        db: &Inner,
        token: &Token,
    ) -> Result<(), StoreError> {
        if let Some(key) = &token.api_key_id {
            if let Some(state) = self.state_mut(db, key)? {
                state.live = state.live.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// The batch, with the key states written into it.
    pub(super) fn into_batch(mut self) -> Result<Batch, StoreError> {
        for (id, state) in self.states {
            match state {
                Some(state) => self.batch.insert(layout::key_state(&id), state.encode()?),
                None => self.batch.remove(layout::key_state(&id)),
            }
        }
        Ok(self.batch)
    }
}

impl Inner {
    /// The token of `stamped` as the store answers it: `None` if a revocation
    /// of its key or owner covers it, else with its expiry capped.
    pub(super) fn live(
        &self,
        removal: Option<&Removal>,
        stamped: Stamped,
    ) -> Result<Option<Token>, StoreError> {
        let Stamped {
            mut token,
            sequence,
        } = stamped;
        if let Some(user) = &token.user_id {
            if sequence < self.user_revoked_below(user)? {
                return Ok(None);
            }
        }
        if let Some(key) = &token.api_key_id {
            let state = match removal.and_then(|r| r.staged_state(key)) {
                Some(staged) => staged.cloned(),
                None => self.key_state(key)?,
            };
            match state {
                Some(state) if !state.revokes(sequence) => {
                    token.expires = state.capped(sequence, token.expires);
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(token))
    }

    /// The revocation state of key `id`; `None`: there is no such key.
    pub(super) fn key_state(&self, id: &ApiKeyId) -> Result<Option<KeyState>, StoreError> {
        self.get(layout::key_state(id))
    }

    /// The sequence below which `user`'s tokens are revoked (0: none are).
    pub(super) fn user_revoked_below(&self, user: &UserId) -> Result<u64, StoreError> {
        Ok(self
            .get_raw(layout::user_revoked(user))?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }
}

/// Stages the removal of revoked tokens that revocations left behind, examining
/// at most `budget` index entries; returns how many it examined. Each pending
/// purge remembers how far it got, so the next chunk goes on from there.
pub(super) fn pending_purge(
    db: &Inner,
    removal: &mut Removal,
    budget: usize,
) -> Result<usize, StoreError> {
    let mut examined = 0;
    for (marker, cursor) in db.entries_under(&layout::pending_purges(), budget)? {
        if examined >= budget {
            break;
        }
        examined += 1;
        let Some(index) = layout::parse_pending_purge(&marker) else {
            continue;
        };
        let start = match cursor.is_empty() {
            true => index.to_vec(),
            // The smallest key above the cursor.
            false => [cursor.as_ref(), &[0]].concat(),
        };
        let entries = db.entries_from(&start, index, budget - examined + 1)?;
        let finished = entries.len() <= budget - examined;
        let chunk = if finished {
            &entries[..]
        } else {
            &entries[..entries.len() - 1]
        };
        for (entry, digest) in chunk {
            examined += 1;
            match db.stamped(&digest_of(digest)?)? {
                Some(stamped) => {
                    let token = stamped.token.clone();
                    if db.live(Some(removal), stamped)?.is_none() {
                        removal.token(&token);
                    }
                }
                // An index entry whose record is gone: drop it too.
                None => removal.batch.remove(entry.clone()),
            }
        }
        match (finished, chunk.last()) {
            (true, _) => {
                removal.batch.remove(marker.clone());
                // Every token the user's marker revoked is gone: so can it be
                // (a later revocation of the user writes both again).
                if let Some(user) = layout::user_of_token_index(index) {
                    removal.batch.remove(layout::user_revoked(&user));
                }
            }
            (false, Some((last, _))) => removal.batch.insert(marker.clone(), last.clone()),
            (false, None) => {}
        }
    }
    Ok(examined)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn a_revocation_covers_the_tokens_before_it_and_none_after() {
        let mut state = KeyState::new(1);
        assert!(!state.revokes(1));
        assert!(state.revokes(0), "a token of an older key with this id");
        state.revoke_all(10);
        assert!(state.revokes(9));
        assert!(!state.revokes(10));
    }

    #[test]
    fn caps_apply_to_the_tokens_they_were_set_over_and_the_earliest_wins() {
        let now = Utc::now();
        let (early, late) = (now + TimeDelta::hours(1), now + TimeDelta::hours(5));
        let far = now + TimeDelta::days(30);
        let mut state = KeyState::new(1);
        state.cap(5, late);
        state.cap(8, early);
        assert_eq!(
            state.caps,
            vec![(8, early)],
            "the later cap says nothing more"
        );
        assert_eq!(state.capped(3, far), early);
        assert_eq!(state.capped(9, far), far, "a token after the caps");
        state.cap(12, late);
        assert_eq!(state.capped(7, far), early);
        assert_eq!(state.capped(10, far), late);
    }

    #[test]
    fn caps_past_the_limit_merge_into_the_earlier_never_a_later_expiry() {
        let now = Utc::now();
        let mut state = KeyState::new(1);
        for i in 1..=(MAX_CAPS as i64 + 2) {
            state.cap(i as u64 * 10, now + TimeDelta::hours(i));
        }
        assert_eq!(state.caps.len(), MAX_CAPS);
        for sequence in 1..=(MAX_CAPS as u64 + 2) * 10 {
            let exact = now + TimeDelta::hours(sequence.div_ceil(10) as i64);
            assert!(state.capped(sequence, now + TimeDelta::days(9)) <= exact);
        }
    }
}
