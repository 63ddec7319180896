//! [`copy_records`]: every key and token from one store into another, to move a
//! project between backends (sled to PostgreSQL, or back) without re-issuing
//! credentials.

use super::{StoreError, StoreErrorKind, TokenStore};

/// Records read per call while copying.
const BATCH: usize = 500;

/// The store cannot list every record (it does not implement
/// [`TokenStore::api_keys_after`] and [`TokenStore::tokens_after`]).
#[derive(Debug, thiserror::Error)]
#[error("this token store cannot list every record, so it cannot be copied")]
struct Unsupported;

pub(super) fn unsupported() -> StoreError {
    StoreError::new(StoreErrorKind::Backend, Unsupported)
}

/// What [`copy_records`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// Keys written to the destination.
    pub api_keys: usize,
    /// Tokens written to the destination.
    pub tokens: usize,
    /// Records the destination held already, identical: a copy run again after an
    /// interruption skips what it did.
    pub already_present: usize,
    /// Ids of records the destination holds in a different form (the destination
    /// was used meanwhile): left as they are there, for you to judge.
    pub differing: Vec<String>,
}

/// Copies every key and token of `from` into `to`, as stored: digests, scopes,
/// expiries, `last_use` and rotated-out secrets. Keys go first, so a token never
/// arrives before its key. Expired records are copied too (the destination's
/// sweeper purges them).
///
/// Run it with both stores' apps stopped (or `from` read-only): a revocation on
/// `from` during the copy may not reach `to`. Each record is one write on `to`,
/// so an interrupted copy can simply be run again.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), scopegate::store::StoreError> {
/// use scopegate::store::{copy_records, SledStore};
/// let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
/// let report = copy_records(&SledStore::open(a.path())?, &SledStore::open(b.path())?).await?;
/// assert_eq!(report.tokens, 0);
/// # Ok(()) }
/// ```
pub async fn copy_records(
    from: &impl TokenStore,
    to: &impl TokenStore,
) -> Result<CopyReport, StoreError> {
    let mut report = CopyReport::default();
    let mut after = None;
    loop {
        let keys = from.api_keys_after(after.as_ref(), BATCH).await?;
        for key in &keys {
            match to.insert_api_key(key).await {
                Ok(()) => report.api_keys += 1,
                Err(err) if err.kind() == StoreErrorKind::Conflict => {
                    match to.api_key_by_id(&key.id).await? {
                        Some(there) if there == *key => report.already_present += 1,
                        _ => report.differing.push(key.id.as_str().to_owned()),
                    }
                }
                Err(err) => return Err(err),
            }
        }
        match keys.last() {
            Some(last) => after = Some(last.id.clone()),
            None => break,
        }
    }
    let mut after = None;
    loop {
        let tokens = from.tokens_after(after.as_ref(), BATCH).await?;
        for token in &tokens {
            match to.insert_token(token).await {
                Ok(()) => report.tokens += 1,
                Err(err) if err.kind() == StoreErrorKind::Conflict => {
                    match to.token_by_digest(&token.digest).await? {
                        Some(there) if there == *token => report.already_present += 1,
                        _ => report.differing.push(token.id.as_str().to_owned()),
                    }
                }
                Err(err) => return Err(err),
            }
        }
        match tokens.last() {
            Some(last) => after = Some(last.digest),
            None => break,
        }
    }
    Ok(report)
}
