//! [`Scopes`]: the scopes a token holds, in one small allocation.

use std::{collections::BTreeSet, fmt};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::scope::Scope;

/// A set of scopes, sorted and without duplicates, as a [`Token`](crate::Token)
/// and a [`Principal`](crate::Principal) hold them.
///
/// It answers what a `BTreeSet<Scope>` does for a token (`contains`, `iter`,
/// `insert`), but keeps its scopes in one boxed slice: a cached token with one
/// scope holds 24 bytes of it instead of a 280-byte tree node. Built-in scopes
/// point at static strings.
///
/// ```
/// use scopegate::{Scope, Scopes};
/// let read = Scope::new("core.data.read").unwrap();
/// let scopes: Scopes = [read.clone(), Scope::USER_AUTH, read.clone()].into_iter().collect();
/// assert_eq!(scopes.len(), 2);
/// assert!(scopes.contains(&read));
/// assert_eq!(scopes.iter().next(), Some(&read), "sorted");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scopes(Box<[Scope]>);

impl Scopes {
    /// No scope.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &Scope) -> bool {
        // Tokens hold a handful of scopes: a scan beats a binary search's branches.
        self.0.iter().any(|held| held == scope)
    }

    /// Adds `scope`; `false` if it was already there.
    pub fn insert(&mut self, scope: Scope) -> bool {
        match self.0.binary_search(&scope) {
            Ok(_) => false,
            Err(at) => {
                self.edit(|scopes| scopes.insert(at, scope));
                true
            }
        }
    }

    /// Removes `scope`; `false` if it was not there.
    pub fn remove(&mut self, scope: &Scope) -> bool {
        match self.0.binary_search(scope) {
            Ok(at) => {
                self.edit(|scopes| drop(scopes.remove(at)));
                true
            }
            Err(_) => false,
        }
    }

    /// Changes the scopes as a `Vec`, keeping one exact allocation.
    fn edit(&mut self, change: impl FnOnce(&mut Vec<Scope>)) {
        let mut scopes = std::mem::take(&mut self.0).into_vec();
        change(&mut scopes);
        self.0 = scopes.into_boxed_slice();
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.0.iter()
    }

    /// The scopes as a sorted slice.
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    /// How many scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no scope.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes: Vec<Scope> = iter.into_iter().collect();
        scopes.sort_unstable();
        scopes.dedup();
        Self(scopes.into_boxed_slice())
    }
}

impl Extend<Scope> for Scopes {
    fn extend<I: IntoIterator<Item = Scope>>(&mut self, iter: I) {
        let added = std::mem::take(&mut self.0)
            .into_vec()
            .into_iter()
            .chain(iter);
        *self = added.collect();
    }
}

impl<const N: usize> From<[Scope; N]> for Scopes {
    fn from(scopes: [Scope; N]) -> Self {
        scopes.into_iter().collect()
    }
}

impl From<BTreeSet<Scope>> for Scopes {
    fn from(scopes: BTreeSet<Scope>) -> Self {
        // Already sorted and unique.
        Self(scopes.into_iter().collect())
    }
}

impl From<Scopes> for BTreeSet<Scope> {
    fn from(scopes: Scopes) -> Self {
        scopes.0.into_vec().into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl IntoIterator for Scopes {
    type Item = Scope;
    type IntoIter = std::vec::IntoIter<Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_vec().into_iter()
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Scopes {
    /// Any sequence of scope ids: sorted and deduplicated on the way in.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Scope>::deserialize(deserializer).map(Self::from_iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(id: &str) -> Scope {
        Scope::new(id).unwrap()
    }

    #[test]
    fn scopes_are_kept_sorted_and_unique_however_they_arrive() {
        let mut scopes: Scopes = [scope("b"), scope("a"), scope("b")].into();
        assert_eq!(scopes.as_slice(), [scope("a"), scope("b")]);
        assert!(scopes.insert(scope("ab")));
        assert!(!scopes.insert(scope("a")));
        scopes.extend([scope("c"), scope("a")]);
        assert_eq!(
            scopes.as_slice(),
            [scope("a"), scope("ab"), scope("b"), scope("c")]
        );
        assert!(scopes.remove(&scope("ab")));
        assert!(!scopes.remove(&scope("ab")));
        assert!(!scopes.contains(&scope("ab")));
        assert_eq!(scopes.len(), 3);
    }

    #[test]
    fn scopes_serialize_as_the_sorted_array_a_set_gave() {
        let set = BTreeSet::from([scope("z"), scope("core.user_auth")]);
        let scopes = Scopes::from(set.clone());
        assert_eq!(
            serde_json::to_string(&scopes).unwrap(),
            serde_json::to_string(&set).unwrap()
        );
        let read: Scopes = serde_json::from_str(r#"["z","a","z"]"#).unwrap();
        assert_eq!(read, Scopes::from([scope("a"), scope("z")]));
        assert_eq!(BTreeSet::from(read.clone()).len(), 2);
        assert!(serde_json::from_str::<Scopes>(r#"["has space"]"#).is_err());
    }
}
