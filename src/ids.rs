//! Identifiers: the app's user ids and our public, non-secret record ids.

use std::{fmt, sync::Arc};

use rand::{distr::Alphanumeric, Rng};
use serde::{Deserialize, Serialize};

/// Length of generated record ids: 22 base62 characters, about 131 random bits,
/// so ids never collide in practice and cannot be enumerated.
const ID_LEN: usize = 22;

fn random_id() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(ID_LEN)
        .map(char::from)
        .collect()
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident($repr:ty)) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name($repr);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id.into())
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.into())
            }
        }
    };
}

string_id!(
    /// The id of one of the app's users, as the app's [`UserLoader`](crate::UserLoader) knows it.
    ///
    /// Numeric ids convert too: `UserId::from(42_u64)`. Shared, not copied, when
    /// cloned: every authenticated request hands one to the principal.
    UserId(Arc<str>)
);

string_id!(
    /// The public id of a [`Token`](crate::Token): used to list and revoke it, never to authenticate.
    TokenId(String)
);

string_id!(
    /// The public id of an [`ApiKey`](crate::ApiKey): used to manage it, never to authenticate.
    ApiKeyId(String)
);

impl From<u64> for UserId {
    fn from(id: u64) -> Self {
        Self(id.to_string().into())
    }
}

impl From<i64> for UserId {
    fn from(id: i64) -> Self {
        Self(id.to_string().into())
    }
}

impl TokenId {
    pub(crate) fn generate() -> Self {
        Self(random_id())
    }
}

impl ApiKeyId {
    pub(crate) fn generate() -> Self {
        Self(random_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_distinct_base62() {
        let a = TokenId::generate();
        let b = TokenId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), ID_LEN);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
