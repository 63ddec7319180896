//! Key layout of the one sled tree that holds everything.
//!
//! The first byte names the record family. Ids of variable length are
//! length-prefixed wherever something follows them, so a prefix scan for user
//! `ab` never matches user `abc`. Times are big-endian with the sign bit flipped,
//! so byte order is time order.

use chrono::{DateTime, Utc};

use crate::{
    ids::{ApiKeyId, TokenId, UserId},
    secret::SecretDigest,
};

/// `t` + digest → token JSON (the auth path is one read).
const TOKEN: u8 = b't';
/// `i` + token id → digest.
const TOKEN_ID: u8 = b'i';
/// `U` + user + created (microseconds) + token id → digest.
const TOKEN_BY_USER: u8 = b'U';
/// Written before the microsecond index: `u` + user + created (milliseconds) +
/// token id → digest. Moved to `U` on open ([`super::upgrade`]).
const LEGACY_TOKEN_BY_USER: u8 = b'u';
/// `g` + key id + token id → digest.
const TOKEN_BY_KEY: u8 = b'g';
/// `k` + key id → API key JSON.
const KEY: u8 = b'k';
/// `d` + digest → key id (current and retired secrets).
const KEY_DIGEST: u8 = b'd';
/// `O` + user + created (microseconds) + key id → key id.
const KEY_BY_USER: u8 = b'O';
/// Written before the microsecond index: `o` + user + created (milliseconds) +
/// key id → key id. Moved to `O` on open ([`super::upgrade`]).
const LEGACY_KEY_BY_USER: u8 = b'o';
/// `x` + time + kind + id → token digest, or empty for keys.
const EXPIRY: u8 = b'x';
/// `h` → time of the last probe write of a reopened database.
const PROBE: u8 = b'h';
/// `v` + key id → the key's revocation state ([`super::revocations::KeyState`]).
const KEY_STATE: u8 = b'v';
/// `R` + user → the sequence below which the user's tokens are revoked.
const USER_REVOKED: u8 = b'R';
/// `p` + index prefix → the last index key a pending purge examined (empty: none):
/// the tokens under that prefix (a key's or a user's) that a revocation left
/// behind, to be removed in chunks.
const PENDING_PURGE: u8 = b'p';

/// What an expiry-index entry is about.
pub(super) const EXPIRES_TOKEN: u8 = b't';
pub(super) const EXPIRES_KEY: u8 = b'k';
pub(super) const EXPIRES_RETIRED_SECRET: u8 = b'r';

fn key(family: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    out.push(family);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn sized(bytes: &[u8]) -> Vec<u8> {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// `n` with its sign bit flipped: as big-endian bytes, byte order is `n`'s order.
fn ordered(n: i64) -> u64 {
    (n as u64) ^ (1 << 63)
}

pub(super) fn time(t: DateTime<Utc>) -> [u8; 8] {
    ordered(t.timestamp_millis()).to_be_bytes()
}

/// `t` to the microsecond, ordered as [`time`] orders milliseconds. The per-user
/// indexes list oldest first, and two credentials can be created in one
/// millisecond; PostgreSQL keeps and orders times to the microsecond, and so
/// must sled.
fn micros(t: DateTime<Utc>) -> [u8; 8] {
    ordered(t.timestamp_micros()).to_be_bytes()
}

pub(super) fn token(digest: &SecretDigest) -> Vec<u8> {
    key(TOKEN, &[digest.as_bytes()])
}

/// Every token record, in digest order.
pub(super) fn all_tokens() -> Vec<u8> {
    vec![TOKEN]
}

/// Every key record, in id order.
pub(super) fn all_api_keys() -> Vec<u8> {
    vec![KEY]
}

pub(super) fn token_id(id: &TokenId) -> Vec<u8> {
    key(TOKEN_ID, &[id.as_str().as_bytes()])
}

pub(super) fn tokens_of_user(user: &UserId) -> Vec<u8> {
    key(TOKEN_BY_USER, &[&sized(user.as_str().as_bytes())])
}

pub(super) fn token_by_user(user: &UserId, created: DateTime<Utc>, id: &TokenId) -> Vec<u8> {
    let mut k = tokens_of_user(user);
    k.extend_from_slice(&micros(created));
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

pub(super) fn tokens_of_key(key_id: &ApiKeyId) -> Vec<u8> {
    key(TOKEN_BY_KEY, &[&sized(key_id.as_str().as_bytes())])
}

pub(super) fn token_by_key(key_id: &ApiKeyId, id: &TokenId) -> Vec<u8> {
    let mut k = tokens_of_key(key_id);
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

pub(super) fn api_key(id: &ApiKeyId) -> Vec<u8> {
    key(KEY, &[id.as_str().as_bytes()])
}

pub(super) fn key_digest(digest: &SecretDigest) -> Vec<u8> {
    key(KEY_DIGEST, &[digest.as_bytes()])
}

pub(super) fn keys_of_user(user: &UserId) -> Vec<u8> {
    key(KEY_BY_USER, &[&sized(user.as_str().as_bytes())])
}

pub(super) fn key_by_user(user: &UserId, created: DateTime<Utc>, id: &ApiKeyId) -> Vec<u8> {
    let mut k = keys_of_user(user);
    k.extend_from_slice(&micros(created));
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

/// Every per-user token index entry written before the microsecond index.
pub(super) fn legacy_tokens_by_user() -> Vec<u8> {
    vec![LEGACY_TOKEN_BY_USER]
}

/// Every per-user key index entry written before the microsecond index.
pub(super) fn legacy_keys_by_user() -> Vec<u8> {
    vec![LEGACY_KEY_BY_USER]
}

pub(super) fn key_state(id: &ApiKeyId) -> Vec<u8> {
    key(KEY_STATE, &[id.as_str().as_bytes()])
}

pub(super) fn user_revoked(user: &UserId) -> Vec<u8> {
    key(USER_REVOKED, &[user.as_str().as_bytes()])
}

/// The marker of a pending purge of the tokens indexed under `index`.
pub(super) fn pending_purge(index: &[u8]) -> Vec<u8> {
    key(PENDING_PURGE, &[index])
}

/// Every pending-purge marker.
pub(super) fn pending_purges() -> Vec<u8> {
    vec![PENDING_PURGE]
}

/// The index prefix a pending-purge marker is about.
pub(super) fn parse_pending_purge(k: &[u8]) -> Option<&[u8]> {
    k.strip_prefix(&[PENDING_PURGE])
}

/// The user of a per-user token index prefix ([`tokens_of_user`]).
pub(super) fn user_of_token_index(prefix: &[u8]) -> Option<UserId> {
    let rest = prefix.strip_prefix(&[TOKEN_BY_USER])?;
    let (len, user) = rest.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    (user.len() == len)
        .then(|| std::str::from_utf8(user).ok().map(UserId::from))
        .flatten()
}

pub(super) fn probe() -> Vec<u8> {
    vec![PROBE]
}

pub(super) fn expiry(at: DateTime<Utc>, what: u8, id: &str) -> Vec<u8> {
    key(EXPIRY, &[&time(at), &[what], id.as_bytes()])
}

/// The expiry-index range of everything due at or before `now`.
pub(super) fn expired_until(now: DateTime<Utc>) -> std::ops::Range<Vec<u8>> {
    let end = (ordered(now.timestamp_millis()) + 1).to_be_bytes();
    vec![EXPIRY]..key(EXPIRY, &[&end])
}

/// Splits an expiry-index key into its kind and id.
pub(super) fn parse_expiry(k: &[u8]) -> Option<(u8, &str)> {
    let rest = k.strip_prefix(&[EXPIRY])?.get(8..)?;
    let (&what, id) = rest.split_first()?;
    Some((what, std::str::from_utf8(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn time_keys_sort_like_times_across_the_epoch() {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let before = epoch - TimeDelta::days(1);
        let after = epoch + TimeDelta::days(1);
        assert!(time(before) < time(epoch));
        assert!(time(epoch) < time(after));
    }

    #[test]
    fn microsecond_keys_sort_like_times_within_one_millisecond_and_across_the_epoch() {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let times = [
            epoch - TimeDelta::days(1),
            epoch - TimeDelta::microseconds(1),
            epoch,
            epoch + TimeDelta::microseconds(1),
            epoch + TimeDelta::microseconds(2),
            epoch + TimeDelta::days(1),
        ];
        for pair in times.windows(2) {
            assert!(micros(pair[0]) < micros(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn user_prefix_does_not_match_a_longer_user() {
        let ab = tokens_of_user(&UserId::from("ab"));
        let abc = token_by_user(&UserId::from("abc"), Utc::now(), &TokenId::from("x"));
        assert!(!abc.starts_with(&ab));
    }

    #[test]
    fn expiry_range_includes_now_and_excludes_later() {
        let now = Utc::now();
        let range = expired_until(now);
        let due = expiry(now, EXPIRES_TOKEN, "a");
        let later = expiry(now + TimeDelta::milliseconds(1), EXPIRES_TOKEN, "a");
        assert!(range.contains(&due));
        assert!(!range.contains(&later));
        assert_eq!(parse_expiry(&due), Some((EXPIRES_TOKEN, "a")));
    }
}
