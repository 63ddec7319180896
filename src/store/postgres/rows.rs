//! Records to and from rows: column lists, binding, decoding.

use sqlx::{postgres::PgRow, Row};

use super::errors::corrupt;
use crate::{
    api_key::ApiKey,
    ids::{ApiKeyId, TokenId, UserId},
    scope::Scope,
    secret::SecretDigest,
    store::{RetiredSecret, StoreError, StoreErrorKind},
    token::Token,
};

/// The columns [`token`] decodes, in any `SELECT` or `RETURNING` of tokens.
pub(super) const TOKEN_COLUMNS: &str =
    "digest, id, user_id, scopes, created, expires, api_key_id, last_use";

/// The columns [`api_key`] decodes.
pub(super) const KEY_COLUMNS: &str = "id, user_id, name, scope, token_duration, active, created, \
     last_use, expires, digest, start, retired_digest, retired_until, locked";

pub(super) fn digest(bytes: &[u8]) -> Result<SecretDigest, StoreError> {
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::from_kind(StoreErrorKind::Corrupt))?;
    Ok(SecretDigest::from_bytes(raw))
}

/// A token's `Scopes` or a key's `BTreeSet`.
fn scopes<C: FromIterator<Scope>>(names: Vec<String>) -> Result<C, StoreError> {
    names
        .into_iter()
        .map(|name| Scope::interned(name).map_err(corrupt))
        .collect()
}

pub(super) fn scope_names<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> Vec<String> {
    scopes.into_iter().map(|s| s.as_str().to_owned()).collect()
}

pub(super) fn token(row: &PgRow) -> Result<Token, StoreError> {
    Ok(Token {
        digest: digest(row.try_get("digest").map_err(corrupt)?)?,
        id: TokenId::from(row.try_get::<String, _>("id").map_err(corrupt)?),
        user_id: row
            .try_get::<Option<String>, _>("user_id")
            .map_err(corrupt)?
            .map(UserId::from),
        scopes: scopes(row.try_get("scopes").map_err(corrupt)?)?,
        created: row.try_get("created").map_err(corrupt)?,
        expires: row.try_get("expires").map_err(corrupt)?,
        api_key_id: row
            .try_get::<Option<String>, _>("api_key_id")
            .map_err(corrupt)?
            .map(ApiKeyId::from),
        last_use: row.try_get("last_use").map_err(corrupt)?,
    })
}

pub(super) fn api_key(row: &PgRow) -> Result<ApiKey, StoreError> {
    let retired_digest: Option<Vec<u8>> = row.try_get("retired_digest").map_err(corrupt)?;
    let retired = match (
        retired_digest,
        row.try_get("retired_until").map_err(corrupt)?,
    ) {
        (Some(bytes), Some(valid_until)) => Some(RetiredSecret {
            digest: digest(&bytes)?,
            valid_until,
        }),
        _ => None,
    };
    Ok(ApiKey {
        id: ApiKeyId::from(row.try_get::<String, _>("id").map_err(corrupt)?),
        user_id: UserId::from(row.try_get::<String, _>("user_id").map_err(corrupt)?),
        name: row.try_get("name").map_err(corrupt)?,
        scope: row
            .try_get::<Option<Vec<String>>, _>("scope")
            .map_err(corrupt)?
            .map(scopes)
            .transpose()?,
        token_duration: row.try_get("token_duration").map_err(corrupt)?,
        active: row.try_get("active").map_err(corrupt)?,
        locked: row.try_get("locked").map_err(corrupt)?,
        created: row.try_get("created").map_err(corrupt)?,
        last_use: row.try_get("last_use").map_err(corrupt)?,
        expires: row.try_get("expires").map_err(corrupt)?,
        digest: digest(row.try_get("digest").map_err(corrupt)?)?,
        start: row.try_get("start").map_err(corrupt)?,
        retired,
    })
}

/// Binds a token's columns, in [`TOKEN_COLUMNS`] order, as `$1..$8`.
pub(super) fn bind_token<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    token: &'q Token,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&token.digest.as_bytes()[..])
        .bind(token.id.as_str())
        .bind(token.user_id.as_ref().map(UserId::as_str))
        .bind(scope_names(&token.scopes))
        .bind(token.created)
        .bind(token.expires)
        .bind(token.api_key_id.as_ref().map(ApiKeyId::as_str))
        .bind(token.last_use)
}

/// Binds a key's columns, in [`KEY_COLUMNS`] order, as `$1..$14`.
pub(super) fn bind_key<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    key: &'q ApiKey,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(key.id.as_str())
        .bind(key.user_id.as_str())
        .bind(key.name.as_str())
        .bind(key.scope.as_ref().map(scope_names))
        .bind(key.token_duration)
        .bind(key.active)
        .bind(key.created)
        .bind(key.last_use)
        .bind(key.expires)
        .bind(&key.digest.as_bytes()[..])
        .bind(key.start.as_str())
        .bind(key.retired.as_ref().map(|r| &r.digest.as_bytes()[..]))
        .bind(key.retired.as_ref().map(|r| r.valid_until))
        .bind(key.locked)
}
