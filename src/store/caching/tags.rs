//! Invalidation tags: what a revocation of a key or of a user's credentials
//! publishes, so caches drop the key records they hold under any of the key's
//! secrets (current, rotated-out, or one replaced since).
//!
//! A cached key is found by the digest a request presented, but a key changes by
//! id (deactivate, rotate, delete) or by owner (revoke a user). A tag is a digest
//! of that id, in its own domain: no secret's digest can equal it, and it travels
//! through [`InvalidationSink::revoked`](super::InvalidationSink::revoked) like
//! any token digest.

use sha2::{Digest as _, Sha256};

use crate::{
    api_key::ApiKey,
    ids::{ApiKeyId, UserId},
    secret::SecretDigest,
    token::Token,
};

fn tag(domain: &[u8], id: &str) -> SecretDigest {
    let mut hash = Sha256::new();
    hash.update(domain);
    hash.update(id.as_bytes());
    SecretDigest::from_bytes(hash.finalize().into())
}

/// The tag a store publishes when key `id` changes or is deleted.
pub fn api_key_tag(id: &ApiKeyId) -> SecretDigest {
    tag(b"scopegate invalidate api_key\0", id.as_str())
}

/// The tag a store publishes when every credential of `user` is revoked.
pub fn user_tag(user: &UserId) -> SecretDigest {
    tag(b"scopegate invalidate user\0", user.as_str())
}

/// What a cache must forget after a token was deleted or changed: its digest.
pub(crate) fn touched_token(token: &Option<Token>) -> Vec<SecretDigest> {
    token.iter().map(|token| token.digest).collect()
}

/// What a cache must forget after key `id` was changed or deleted: the tokens
/// the write removed or changed, and the key's tag.
pub(crate) fn touched_by_key_change(
    changed: &Option<(ApiKey, Vec<SecretDigest>)>,
    id: &ApiKeyId,
) -> Vec<SecretDigest> {
    let removed = changed
        .iter()
        .flat_map(|(_, digests)| digests.iter().copied());
    removed.chain([api_key_tag(id)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_and_a_user_with_the_same_name_have_different_tags() {
        assert_ne!(
            api_key_tag(&ApiKeyId::from("same")),
            user_tag(&UserId::from("same"))
        );
        assert_eq!(
            api_key_tag(&ApiKeyId::from("k")),
            api_key_tag(&ApiKeyId::from("k"))
        );
    }
}
