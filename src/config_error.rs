//! [`ConfigError`]: settings refused when a gate or state is built.

/// Invalid configuration, refused when the gate is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The secret prefix must be 1–16 lower-case ASCII letters or digits.
    #[error("the secret prefix must be 1-16 lower-case ASCII letters or digits")]
    InvalidPrefix,
    /// A pepper must be at least 16 bytes.
    #[error("the pepper must be at least 16 bytes")]
    PepperTooShort,
    /// The default token lifetime must be a finite number of days in (0, 3650].
    #[error("the default token lifetime must be more than 0 and at most 3650 days")]
    InvalidLifetime,
    /// A realm must be 1–100 printable ASCII characters without `"` or `\`, so it can
    /// be quoted in a `WWW-Authenticate` header.
    #[error("the realm must be 1-100 printable ASCII characters without quotes or backslashes")]
    InvalidRealm,
    /// Anonymous sessions need a lifetime from one second to 3650 days and room for
    /// at least one.
    #[error("anonymous sessions need a lifetime from 1 s to 3650 days and max_live of at least 1")]
    InvalidAnonymousSessions,
    /// A cache lifetime ([`CacheConfig`](crate::store::CacheConfig)'s TTLs) or the
    /// `last_use` interval must be at most
    /// [`MAX_CACHE_LIFETIME`](crate::store::MAX_CACHE_LIFETIME).
    #[error("cache lifetimes and the last_use interval must be at most 100 years")]
    InvalidCacheLifetime,
    /// A token header, cookie or query parameter name that is not a valid name.
    #[error("invalid name for a token source: {0:?}")]
    InvalidSourceName(String),
}
