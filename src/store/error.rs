use std::{error::Error as StdError, fmt, sync::Arc};

/// A store operation failed.
///
/// A write that failed with [`StoreErrorKind::Backend`] may or may not have reached
/// the disk; the store then serves nothing until it has reopened itself from disk,
/// so what it answers next is what the disk holds. Retry such a write.
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

/// What kind of store failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The backend failed (I/O, connection, a crashed worker).
    Backend,
    /// The store cannot serve now: its backend is unreachable or overloaded (a
    /// database down, an exhausted pool, a timeout), or an earlier failure made it
    /// stop serving until it has recovered. Retry later; a write that failed this
    /// way may or may not have been applied.
    Unavailable,
    /// A stored record could not be decoded.
    Corrupt,
    /// A record with the same id or digest exists already.
    Conflict,
    /// The API key has as many live tokens as it may have
    /// ([`TokenStore::mint_token`](crate::store::TokenStore::mint_token)): a refusal,
    /// not a failure.
    TooManyTokens,
}

impl StoreError {
    /// An error of `kind` caused by `source`.
    pub fn new(kind: StoreErrorKind, source: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            kind,
            source: Some(Arc::new(source)),
        }
    }

    /// An error of `kind` with no underlying cause.
    pub fn from_kind(kind: StoreErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// What kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            StoreErrorKind::Backend => "token store backend failed",
            StoreErrorKind::Unavailable => "token store is unavailable until its backend recovers",
            StoreErrorKind::Corrupt => "token store holds a record it cannot decode",
            StoreErrorKind::Conflict => "token store already holds a record with that id or digest",
            StoreErrorKind::TooManyTokens => {
                "the API key has as many live tokens as the store allows"
            }
        })
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// `err` and its causes on one line, `outer: cause: root cause`, for logs and
/// startup messages (a store error alone says only which layer failed).
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Many errors print their cause already ("error communicating with
        // database: Connection refused"): say it once.
        if !line.ends_with(&cause_text) {
            line.push_str(": ");
            line.push_str(&cause_text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_says_a_cause_its_error_already_printed_once() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "error communicating with database: {}", self.0)
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = StoreError::new(StoreErrorKind::Unavailable, Wrapper(io));
        assert_eq!(
            error_chain(&err),
            "token store is unavailable until its backend recovers: \
             error communicating with database: refused"
        );
    }

    #[test]
    fn error_chain_names_every_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
        let err = StoreError::new(StoreErrorKind::Backend, io);
        assert_eq!(
            error_chain(&err),
            "token store backend failed: no space left"
        );
    }
}
