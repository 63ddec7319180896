//! Tokens: short-lived bearer credentials and their scope checks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    ids::{ApiKeyId, TokenId, UserId},
    scope::{join_scopes, Scope},
    scopes::Scopes,
    secret::{Secret, SecretDigest},
};

/// A stored token. The secret itself is never kept: only its [`SecretDigest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Token {
    /// Public id, to list and revoke the token.
    pub id: TokenId,
    /// Digest of the secret.
    pub digest: SecretDigest,
    /// The owner; `None` for an anonymous token.
    pub user_id: Option<UserId>,
    /// What the token may do.
    pub scopes: Scopes,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// When it stops working.
    pub expires: DateTime<Utc>,
    /// The API key it was minted from, if any.
    pub api_key_id: Option<ApiKeyId>,
    /// When it last authenticated a request, as recorded: at most one write per
    /// token per [`ScopeGateBuilder::with_last_use_interval`](crate::ScopeGateBuilder::with_last_use_interval),
    /// so it may lag by up to that interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_use: Option<DateTime<Utc>>,
}

impl Token {
    /// Whether `self` grants what `other` does: the same token, owner, scopes
    /// and expiry (`last_use` aside, which changes without changing a grant).
    pub(crate) fn grants_as(&self, other: &Token) -> bool {
        self.id == other.id
            && self.digest == other.digest
            && self.user_id == other.user_id
            && self.scopes == other.scopes
            && self.expires == other.expires
            && self.api_key_id == other.api_key_id
    }

    /// A token with no owner, no scopes and no key: set the public fields to fill
    /// it in (a store decoding its records, a test).
    pub fn new(
        id: TokenId,
        digest: SecretDigest,
        created: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            digest,
            user_id: None,
            scopes: Scopes::new(),
            created,
            expires,
            api_key_id: None,
            last_use: None,
        }
    }

    /// Whether the token has expired at `now`.
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires <= now
    }

    /// Whether the token carries every scope in `required` (strict:
    /// `core.user_auth` does not stand in for other scopes here).
    pub fn has_scope<'a>(&self, required: impl IntoIterator<Item = &'a Scope>) -> bool {
        required.into_iter().all(|s| self.scopes.contains(s))
    }

    /// Like [`Token::has_scope`], but the error names the missing scopes.
    pub fn require_scope<'a>(
        &self,
        required: impl IntoIterator<Item = &'a Scope>,
    ) -> Result<(), MissingScopes> {
        let required: Vec<Scope> = required.into_iter().cloned().collect();
        let missing: Vec<Scope> = required
            .iter()
            .filter(|s| !self.scopes.contains(s))
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(MissingScopes { required, missing })
        }
    }

    /// A user's full session: a user token carrying `core.user_auth`.
    pub fn is_full_session(&self) -> bool {
        self.user_id.is_some() && self.scopes.contains(&Scope::USER_AUTH)
    }

    /// Whether a non-strict scope guard lets the token through: a full session
    /// passes every guard; any other token needs all of `required`.
    pub fn allows<'a>(&self, required: impl IntoIterator<Item = &'a Scope>) -> bool {
        self.is_full_session() || self.has_scope(required)
    }

    /// Adds `scope` to this copy of the token. To persist it, use
    /// [`ScopeGate::add_token_scopes`](crate::ScopeGate::add_token_scopes).
    pub fn add_scope(&mut self, scope: Scope) {
        self.scopes.insert(scope);
    }
}

/// A token lacks scopes a caller required ([`Token::require_scope`]). Not to be
/// confused with the HTTP 403 `rejection::InsufficientScope` (feature `axum`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid token scope. Required: {}. Missing: {}.", join_scopes(.required), join_scopes(.missing))]
pub struct MissingScopes {
    /// Everything that was required.
    pub required: Vec<Scope>,
    /// What the token lacks of it.
    pub missing: Vec<Scope>,
}

/// A token just created: the secret, shown this once, and the stored record.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The bearer secret. Hand it to the client; it cannot be recovered later.
    pub secret: Secret,
    /// The record as stored.
    pub token: Token,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    const DATA_READ: Scope = Scope::from_static("core.data.read");
    const DATA_WRITE: Scope = Scope::from_static("core.data.write");

    fn token(user: Option<&str>, scopes: &[Scope]) -> Token {
        let now = Utc::now();
        Token {
            id: TokenId::generate(),
            digest: SecretDigest::from_bytes([0; 32]),
            user_id: user.map(UserId::from),
            scopes: scopes.iter().cloned().collect(),
            created: now,
            expires: now + TimeDelta::days(1),
            api_key_id: None,
            last_use: None,
        }
    }

    #[test]
    fn a_token_has_the_scopes_it_holds_and_no_others() {
        let t = token(Some("u"), &[DATA_READ]);
        assert!(t.has_scope(&[DATA_READ]));
        assert!(!t.has_scope(&[DATA_READ, DATA_WRITE]));
    }

    #[test]
    fn has_scope_is_strict_about_user_auth() {
        let t = token(Some("u"), &[Scope::USER_AUTH]);
        assert!(!t.has_scope(&[DATA_READ]));
        assert!(t.allows(&[DATA_READ]));
    }

    #[test]
    fn anonymous_token_with_user_auth_is_not_a_full_session() {
        let t = token(None, &[Scope::USER_AUTH]);
        assert!(!t.is_full_session());
        assert!(!t.allows(&[DATA_READ]));
    }

    #[test]
    fn require_scope_names_the_missing_scopes() {
        let t = token(Some("u"), &[DATA_READ]);
        let err = t.require_scope(&[DATA_READ, DATA_WRITE]).unwrap_err();
        assert_eq!(err.missing, vec![DATA_WRITE]);
        assert!(err.to_string().contains("Missing: core.data.write."));
    }

    #[test]
    fn add_scope_does_not_duplicate() {
        let mut t = token(None, &[Scope::ANONYMOUS_SESSION]);
        t.add_scope(DATA_READ);
        t.add_scope(DATA_READ);
        assert_eq!(t.scopes.len(), 2);
    }
}
