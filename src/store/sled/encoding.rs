//! How records are stored: tokens and keys' revocation states in a compact,
//! versioned binary form; API keys (few, and rich) as JSON.
//!
//! A token is the record there are millions of, and the one the auth path
//! decodes on every cache miss, so its form is binary:
//!
//! ```text
//! 0x02                                  format version
//! id          length-prefixed UTF-8
//! digest      32 bytes
//! user_id     0x00, or 0x01 + length-prefixed UTF-8
//! scopes      count (varint) × length-prefixed UTF-8
//! created     i64 seconds + u32 nanoseconds, little-endian
//! expires     same
//! api_key_id  0x00, or 0x01 + length-prefixed UTF-8
//! last_use    0x00, or 0x01 + time
//! sequence    u64, little-endian: the order of its write (see `revocations`)
//! ```
//!
//! Lengths are LEB128 varints. Older databases hold version 0x01 (the same
//! without the sequence) or JSON token records, which start with `{`: they are
//! still read, with sequence 0, and rewritten in the current form the next time
//! the token changes. Anything else (a future version, a truncated record,
//! trailing bytes) is reported as corrupt, never guessed at.
//!
//! A key's revocation state:
//!
//! ```text
//! 0x01                                  format version
//! revoked_below  u64    tokens with a lower sequence are revoked
//! live           u64    tokens at or above it, still stored
//! caps           count (varint) × (through: u64, at: time)
//! ```

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    api_key::ApiKey,
    ids::{ApiKeyId, TokenId, UserId},
    scope::Scope,
    secret::SecretDigest,
    store::{StoreError, StoreErrorKind},
    token::Token,
};

/// A token record with the sequence number of its write.
#[derive(Debug, Clone)]
pub(super) struct Stamped {
    pub(super) token: Token,
    pub(super) sequence: u64,
}

/// What revocations and expiry changes of a key mean for its tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct KeyState {
    /// Tokens with a lower sequence are revoked.
    pub(super) revoked_below: u64,
    /// How many tokens at or above `revoked_below` are stored: the count the
    /// per-key limit is checked against.
    pub(super) live: u64,
    /// `(through, at)`: tokens with a sequence up to `through` expire by `at`.
    /// `through` and `at` both increase along the list.
    pub(super) caps: Vec<(u64, DateTime<Utc>)>,
}

/// The first byte of a binary token record without its sequence.
const TOKEN_V1: u8 = 0x01;
/// The first byte of a binary token record.
const TOKEN_V2: u8 = 0x02;
/// The first byte of a key's revocation state.
const KEY_STATE_V1: u8 = 0x01;
/// The first byte of every JSON record.
const JSON: u8 = b'{';

/// A record as sled stores it.
pub(super) trait Stored: Sized {
    fn encode(&self) -> Result<Vec<u8>, StoreError>;
    fn decode(bytes: &[u8]) -> Result<Self, StoreError>;
}

/// Why a stored token record could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Damaged(&'static str);

fn corrupt(why: &'static str) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, Damaged(why))
}

fn to_json<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::new(StoreErrorKind::Corrupt, e))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::new(StoreErrorKind::Corrupt, e))
}

impl Stored for ApiKey {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        to_json(self)
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        from_json(bytes)
    }
}

impl Stored for Stamped {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Writer(Vec::with_capacity(104));
        out.byte(TOKEN_V2);
        write_token_v1(&mut out, &self.token);
        out.0.extend_from_slice(&self.sequence.to_le_bytes());
        Ok(out.0)
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let (token, sequence) = match bytes.first() {
            Some(&TOKEN_V2) => {
                let mut input = Reader(&bytes[1..]);
                let token = read_token_v1(&mut input)?;
                let sequence = u64::from_le_bytes(input.array()?);
                input.end()?;
                (token, sequence)
            }
            Some(&TOKEN_V1) => {
                let mut input = Reader(&bytes[1..]);
                let token = read_token_v1(&mut input)?;
                input.end()?;
                (token, 0)
            }
            Some(&JSON) => (from_json(bytes)?, 0),
            _ => return Err(corrupt("unknown token record format")),
        };
        Ok(Self { token, sequence })
    }
}

impl Stored for KeyState {
    fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Writer(Vec::with_capacity(20 + 20 * self.caps.len()));
        out.byte(KEY_STATE_V1);
        out.0.extend_from_slice(&self.revoked_below.to_le_bytes());
        out.0.extend_from_slice(&self.live.to_le_bytes());
        out.length(self.caps.len());
        for (through, at) in &self.caps {
            out.0.extend_from_slice(&through.to_le_bytes());
            out.time(*at);
        }
        Ok(out.0)
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.first() != Some(&KEY_STATE_V1) {
            return Err(corrupt("unknown key state format"));
        }
        let mut input = Reader(&bytes[1..]);
        let revoked_below = u64::from_le_bytes(input.array()?);
        let live = u64::from_le_bytes(input.array()?);
        let count = input.length()?;
        let mut caps = Vec::with_capacity(count.min(8));
        for _ in 0..count {
            caps.push((u64::from_le_bytes(input.array()?), input.time()?));
        }
        input.end()?;
        Ok(Self {
            revoked_below,
            live,
            caps,
        })
    }
}

fn write_token_v1(out: &mut Writer, token: &Token) {
    out.text(token.id.as_str());
    out.0.extend_from_slice(token.digest.as_bytes());
    out.optional(token.user_id.as_ref(), |out, user| out.text(user.as_str()));
    out.length(token.scopes.len());
    for scope in &token.scopes {
        out.text(scope.as_str());
    }
    out.time(token.created);
    out.time(token.expires);
    out.optional(token.api_key_id.as_ref(), |out, key| out.text(key.as_str()));
    out.optional(token.last_use.as_ref(), |out, at| out.time(*at));
}

/// The fields of a token record after its version byte, up to its sequence.
fn read_token_v1(input: &mut Reader<'_>) -> Result<Token, StoreError> {
    let id = TokenId::from(input.text()?);
    let digest = SecretDigest::from_bytes(input.array()?);
    let user_id = input.optional(|input| Ok(UserId::from(input.text()?)))?;
    let count = input.length()?;
    let mut scopes = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let scope = Scope::interned(input.text()?)
            .map_err(|_| corrupt("invalid scope in a token record"))?;
        scopes.push(scope);
    }
    let created = input.time()?;
    let expires = input.time()?;
    let api_key_id = input.optional(|input| Ok(ApiKeyId::from(input.text()?)))?;
    let last_use = input.optional(Reader::time)?;
    let mut token = Token::new(id, digest, created, expires);
    token.user_id = user_id;
    token.scopes = scopes.into_iter().collect();
    token.api_key_id = api_key_id;
    token.last_use = last_use;
    Ok(token)
}

struct Writer(Vec<u8>);

impl Writer {
    fn byte(&mut self, byte: u8) {
        self.0.push(byte);
    }

    fn length(&mut self, mut n: usize) {
        while n >= 0x80 {
            self.byte((n as u8) | 0x80);
            n >>= 7;
        }
        self.byte(n as u8);
    }

    fn text(&mut self, text: &str) {
        self.length(text.len());
        self.0.extend_from_slice(text.as_bytes());
    }

    fn time(&mut self, at: DateTime<Utc>) {
        self.0.extend_from_slice(&at.timestamp().to_le_bytes());
        self.0
            .extend_from_slice(&at.timestamp_subsec_nanos().to_le_bytes());
    }

    fn optional<T>(&mut self, value: Option<&T>, write: impl FnOnce(&mut Self, &T)) {
        match value {
            None => self.byte(0),
            Some(value) => {
                self.byte(1);
                write(self, value);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn end(&self) -> Result<(), StoreError> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err(corrupt("trailing bytes after a record")),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt("truncated token record"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn length(&mut self) -> Result<usize, StoreError> {
        let mut n = 0usize;
        // At most five bytes: no stored length comes near 2^32.
        for shift in (0..35).step_by(7) {
            let [byte] = self.array()?;
            n |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(corrupt("overlong length in a token record"))
    }

    fn text(&mut self) -> Result<String, StoreError> {
        let n = self.length()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| corrupt("text in a token record is not UTF-8"))
    }

    fn time(&mut self) -> Result<DateTime<Utc>, StoreError> {
        let seconds = i64::from_le_bytes(self.array()?);
        let nanos = u32::from_le_bytes(self.array()?);
        DateTime::from_timestamp(seconds, nanos).ok_or_else(|| corrupt("time out of range"))
    }

    fn optional<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match self.array()? {
            [0] => Ok(None),
            [1] => read(self).map(Some),
            _ => Err(corrupt("invalid presence byte in a token record")),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn token() -> Token {
        let created = DateTime::from_timestamp(1_790_000_000, 123_456_789).unwrap();
        let mut token = Token::new(
            TokenId::from("tok1"),
            SecretDigest::from_bytes([9; 32]),
            created,
            created + TimeDelta::days(30),
        );
        token.user_id = Some(UserId::from("ü-ser"));
        token.scopes = [Scope::USER_AUTH, Scope::new("core.data.read").unwrap()].into();
        token.api_key_id = Some(ApiKeyId::from("key1"));
        token.last_use = Some(created + TimeDelta::seconds(5));
        token
    }

    fn stamped(token: Token) -> Stamped {
        Stamped {
            token,
            sequence: 42,
        }
    }

    #[test]
    fn a_token_survives_the_binary_form_exactly() {
        let token = token();
        let bytes = stamped(token.clone()).encode().unwrap();
        assert_eq!(bytes[0], TOKEN_V2);
        let read = Stamped::decode(&bytes).unwrap();
        assert_eq!((read.token, read.sequence), (token.clone(), 42));
        let bare = Token::new(token.id.clone(), token.digest, token.created, token.expires);
        let read = Stamped::decode(&stamped(bare.clone()).encode().unwrap()).unwrap();
        assert_eq!(read.token, bare);
    }

    #[test]
    fn token_records_from_older_versions_still_read_with_sequence_zero() {
        let token = token();
        let json = serde_json::to_vec(&token).unwrap();
        let read = Stamped::decode(&json).unwrap();
        assert_eq!((read.token, read.sequence), (token.clone(), 0));
        let mut v1 = stamped(token.clone()).encode().unwrap();
        v1.truncate(v1.len() - 8);
        v1[0] = TOKEN_V1;
        let read = Stamped::decode(&v1).unwrap();
        assert_eq!((read.token, read.sequence), (token, 0));
    }

    #[test]
    fn the_binary_form_is_less_than_half_the_json_form() {
        let token = token();
        let binary = stamped(token.clone()).encode().unwrap();
        let json = serde_json::to_vec(&token).unwrap();
        assert!(
            binary.len() * 2 < json.len(),
            "{} vs {}",
            binary.len(),
            json.len()
        );
    }

    #[test]
    fn damaged_records_are_corrupt_never_a_token() {
        let bytes = stamped(token()).encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(Stamped::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Stamped::decode(&longer).is_err());
        let mut future = bytes;
        future[0] = 0x03;
        assert!(Stamped::decode(&future).is_err());
    }

    #[test]
    fn a_key_state_survives_its_binary_form_and_damage_is_corrupt() {
        let at = DateTime::from_timestamp(1_790_000_000, 5).unwrap();
        let state = KeyState {
            revoked_below: 7,
            live: 3,
            caps: vec![(9, at), (12, at + TimeDelta::days(1))],
        };
        let bytes = state.encode().unwrap();
        assert_eq!(KeyState::decode(&bytes).unwrap(), state);
        for cut in 0..bytes.len() {
            assert!(KeyState::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
