//! Scopes and the registry of scopes an app offers.

use std::{
    borrow::{Borrow, Cow},
    collections::{BTreeSet, HashMap},
    fmt,
};

use serde::{Deserialize, Serialize};

use crate::fast_hash::UniformKeys;

const MAX_SCOPE_LEN: usize = 200;

/// One scope id, such as `core.data.read`.
///
/// Ids are RFC 6749 `scope-token`s: non-empty printable ASCII without spaces,
/// `"` or `\`, so they can be quoted into a `WWW-Authenticate` header as they are.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Scope(Cow<'static, str>);

impl Scope {
    /// A full user session: passes every non-strict scope guard.
    pub const USER_AUTH: Scope = Scope(Cow::Borrowed("core.user_auth"));
    /// The scope of anonymous session tokens.
    pub const ANONYMOUS_SESSION: Scope = Scope(Cow::Borrowed("core.anonymous_session"));

    /// A scope from a runtime string.
    pub fn new(id: impl Into<String>) -> Result<Self, ScopeError> {
        let id = id.into();
        if is_scope_token(&id) {
            Ok(Self(Cow::Owned(id)))
        } else {
            Err(ScopeError::InvalidId(id))
        }
    }

    /// A scope from a literal, checked at compile time when used in a `const`.
    ///
    /// ```
    /// use scopegate::Scope;
    /// const DATA_READ: Scope = Scope::from_static("core.data.read");
    /// assert_eq!(DATA_READ.as_str(), "core.data.read");
    /// ```
    ///
    /// # Panics
    /// If `id` is not a valid scope id.
    pub const fn from_static(id: &'static str) -> Self {
        assert!(is_scope_token(id), "invalid scope id");
        Self(Cow::Borrowed(id))
    }

    /// A scope read back from a store: the built-in scopes most tokens carry
    /// share one static string instead of a heap copy per record.
    pub(crate) fn interned(id: String) -> Result<Self, ScopeError> {
        match id.as_str() {
            "core.user_auth" => Ok(Self::USER_AUTH),
            "core.anonymous_session" => Ok(Self::ANONYMOUS_SESSION),
            _ => Self::new(id),
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Scope ids separated by spaces, as in OAuth `scope` values and our messages.
pub(crate) fn join_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

const fn is_scope_token(id: &str) -> bool {
    let bytes = id.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_SCOPE_LEN {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b == 0x21 || (b >= 0x23 && b <= 0x5B) || (b >= 0x5D && b <= 0x7E)) {
            return false;
        }
        i += 1;
    }
    true
}

impl Borrow<str> for Scope {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", &*self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Scope::interned(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A scope could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The id is empty, too long, or has a space or a character outside printable ASCII.
    #[error("invalid scope id {0:?}: use printable ASCII without spaces, quotes or backslashes")]
    InvalidId(String),
    /// The id is registered already.
    #[error("scope {0:?} is registered already")]
    Duplicate(String),
}

/// Scopes asked for that a key may not carry. Displays as
/// `Invalid scopes: a,b.` (sorted, deduplicated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid scopes: {}.", .0.join(","))]
pub struct InvalidScopes(pub Vec<String>);

/// The description of one registered scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeInfo {
    /// The scope id.
    pub id: Scope,
    /// A short human name.
    pub name: String,
    /// What a token with this scope may do.
    pub description: String,
    /// Only admins may put this scope on a key.
    pub admin_only: bool,
    #[serde(skip)]
    builtin: bool,
}

/// The scopes an app offers, built-ins included.
///
/// ```
/// use scopegate::ScopeRegistry;
/// let mut registry = ScopeRegistry::new();
/// registry.register("core.data.read", "Read data", "Read any data you can see.")?;
/// registry.register_admin("core.setting.read", "Read settings", "Read system settings.")?;
/// assert!(registry.register("core.data.read", "again", "").is_err());
/// # Ok::<(), scopegate::ScopeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ScopeRegistry {
    scopes: Vec<ScopeInfo>,
    /// Guards look their scopes up on every request. The keys are the app's own
    /// names, fixed once built, so a caller's lookups cannot crowd the table: the
    /// cheap keyed hash serves (see `fast_hash`).
    index: HashMap<Scope, usize, UniformKeys>,
}

impl Default for ScopeRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl ScopeRegistry {
    /// A registry holding the built-ins `core.user_auth` and `core.anonymous_session`.
    pub fn new() -> Self {
        let mut registry = Self {
            scopes: Vec::new(),
            index: HashMap::with_hasher(UniformKeys::new()),
        };
        registry.insert(ScopeInfo {
            id: Scope::USER_AUTH,
            name: "User authentication".into(),
            description: "Full access to the user's account, as if logged in.".into(),
            admin_only: false,
            builtin: true,
        });
        registry.insert(ScopeInfo {
            id: Scope::ANONYMOUS_SESSION,
            name: "Anonymous session".into(),
            description: "A session without a user.".into(),
            admin_only: false,
            builtin: true,
        });
        registry
    }

    /// Registers a scope any user may put on a key.
    pub fn register(
        &mut self,
        id: &str,
        name: &str,
        description: &str,
    ) -> Result<&mut Self, ScopeError> {
        self.add(id, name, description, false)
    }

    /// Registers a scope only admins may put on a key.
    pub fn register_admin(
        &mut self,
        id: &str,
        name: &str,
        description: &str,
    ) -> Result<&mut Self, ScopeError> {
        self.add(id, name, description, true)
    }

    fn add(
        &mut self,
        id: &str,
        name: &str,
        description: &str,
        admin_only: bool,
    ) -> Result<&mut Self, ScopeError> {
        let id = Scope::new(id)?;
        if self.index.contains_key(&id) {
            return Err(ScopeError::Duplicate(id.as_str().to_owned()));
        }
        self.insert(ScopeInfo {
            id,
            name: name.to_owned(),
            description: description.to_owned(),
            admin_only,
            builtin: false,
        });
        Ok(self)
    }

    fn insert(&mut self, info: ScopeInfo) {
        self.index.insert(info.id.clone(), self.scopes.len());
        self.scopes.push(info);
    }

    /// Whether `scope` is registered (the built-ins are).
    pub fn contains(&self, scope: &Scope) -> bool {
        self.index.contains_key(scope)
    }

    /// An error listing the scopes of `scopes` that are not registered, sorted,
    /// once each.
    pub(crate) fn check_registered<'a>(
        &self,
        scopes: impl IntoIterator<Item = &'a Scope, IntoIter: Clone>,
    ) -> Result<(), InvalidScopes> {
        let scopes = scopes.into_iter();
        // Guards check on every request: no set is built unless one is missing.
        if scopes.clone().all(|s| self.contains(s)) {
            return Ok(());
        }
        let unknown: BTreeSet<&str> = scopes
            .filter(|s| !self.contains(s))
            .map(Scope::as_str)
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(InvalidScopes(
                unknown.into_iter().map(str::to_owned).collect(),
            ))
        }
    }

    /// Whether `scope` is registered as one only admins may hold.
    pub(crate) fn is_admin_only(&self, scope: &Scope) -> bool {
        self.get(scope.as_str()).is_some_and(|info| info.admin_only)
    }

    /// The description of `id`, if registered.
    pub fn get(&self, id: &str) -> Option<&ScopeInfo> {
        self.index.get(id).map(|&i| &self.scopes[i])
    }

    /// Every scope, built-ins first, then in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &ScopeInfo> {
        self.scopes.iter()
    }

    /// App scopes any user may put on a key (`custom` in `GET /token/scopes`).
    pub fn custom(&self) -> impl Iterator<Item = &ScopeInfo> {
        self.scopes.iter().filter(|s| !s.builtin && !s.admin_only)
    }

    /// App scopes only admins may put on a key (`admin_custom` in `GET /token/scopes`).
    pub fn admin_custom(&self) -> impl Iterator<Item = &ScopeInfo> {
        self.scopes.iter().filter(|s| !s.builtin && s.admin_only)
    }

    /// The scopes a user may put on a key: the app's scopes, admin-only ones for admins.
    /// Built-ins are not among them: a key without a scope list is the full-access key.
    pub fn assignable(&self, is_admin: bool) -> impl Iterator<Item = &ScopeInfo> {
        self.scopes
            .iter()
            .filter(move |s| !s.builtin && (is_admin || !s.admin_only))
    }

    /// Checks that a user may put `requested` on a key and returns them as a set.
    pub fn check_assignable<'a>(
        &self,
        requested: impl IntoIterator<Item = &'a str>,
        is_admin: bool,
    ) -> Result<BTreeSet<Scope>, InvalidScopes> {
        let mut granted = BTreeSet::new();
        let mut invalid = BTreeSet::new();
        for id in requested {
            match self.get(id) {
                Some(info) if !info.builtin && (is_admin || !info.admin_only) => {
                    granted.insert(info.id.clone());
                }
                _ => {
                    invalid.insert(id.to_owned());
                }
            }
        }
        if invalid.is_empty() {
            Ok(granted)
        } else {
            Err(InvalidScopes(invalid.into_iter().collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn girder() -> ScopeRegistry {
        let mut r = ScopeRegistry::new();
        r.register("core.data.read", "Read data", "").unwrap();
        r.register_admin("core.setting.read", "Read settings", "")
            .unwrap();
        r
    }

    #[test]
    fn builtins_are_registered_but_not_assignable() {
        let r = girder();
        assert!(r.get("core.user_auth").is_some());
        assert!(r.get("core.anonymous_session").is_some());
        assert_eq!(
            r.check_assignable(["core.user_auth"], true)
                .unwrap_err()
                .to_string(),
            "Invalid scopes: core.user_auth."
        );
    }

    #[test]
    fn registering_an_id_twice_is_an_error() {
        let mut r = girder();
        assert_eq!(
            r.register("core.data.read", "x", "").unwrap_err(),
            ScopeError::Duplicate("core.data.read".into())
        );
        assert!(r.register("core.user_auth", "x", "").is_err());
        assert_eq!(r.custom().count(), 1);
    }

    #[test]
    fn ids_with_spaces_or_quotes_are_rejected() {
        let mut r = ScopeRegistry::new();
        for bad in ["", "data read", "tab\tbed", "quo\"te", "back\\slash", "é"] {
            assert!(
                matches!(r.register(bad, "x", ""), Err(ScopeError::InvalidId(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn admin_only_scopes_are_assignable_by_admins_only() {
        let r = girder();
        let user: Vec<_> = r.assignable(false).map(|s| s.id.as_str()).collect();
        let admin: Vec<_> = r.assignable(true).map(|s| s.id.as_str()).collect();
        assert_eq!(user, ["core.data.read"]);
        assert_eq!(admin, ["core.data.read", "core.setting.read"]);
        assert_eq!(
            r.check_assignable(["core.setting.read"], false)
                .unwrap_err()
                .to_string(),
            "Invalid scopes: core.setting.read."
        );
    }

    #[test]
    fn invalid_scopes_are_listed_sorted_once() {
        let r = girder();
        let err = r
            .check_assignable(["zeta", "core.data.read", "alpha", "zeta"], false)
            .unwrap_err();
        assert_eq!(err.to_string(), "Invalid scopes: alpha,zeta.");
    }

    #[test]
    fn valid_request_is_deduplicated() {
        let r = girder();
        let set = r
            .check_assignable(["core.data.read", "core.data.read"], false)
            .unwrap();
        assert_eq!(set.len(), 1);
    }
}
