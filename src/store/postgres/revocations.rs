//! Revocations whose cost does not grow with the tokens they revoke.
//!
//! Each token row carries the `sequence` of its insert (from
//! `{s}.token_sequence`). Revoking every token of a key sets the key's
//! `revoked_below` to the next sequence; revoking a user's, their row in
//! `{s}.revoked_users`; deleting a key deletes its row. One small write,
//! under the key's row lock: a mint holds that lock too and takes its sequence
//! after it, so a token minted before the revocation is below the mark and one
//! minted after is not. Every read of a token checks it against them
//! ([`live`]), so a revoked token is never answered, even while its row waits
//! to be purged. The revocation notifies its key's or user's tag, and caches
//! forget every token of theirs in one step.
//!
//! The rows are purged by the sweeper's `purge_expired` ([`purge_pending`]),
//! in chunks, each skipping rows another transaction holds.
//!
//! An earlier expiry of a key caps its older tokens the same way: one write
//! sets the key's `capped_below` and `capped_at`, and every read answers a
//! token below the mark with its expiry capped ([`token_columns`]). A key holds
//! one cap; a second, later one merges into it at the earlier time, so a token
//! may expire earlier than its cap, never later. Once a cap has passed, the
//! sweeper folds it into `revoked_below` ([`fold_passed_caps`]).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::errors::db;
use crate::{secret::SecretDigest, store::StoreError};

/// What a pending purge is about.
#[derive(Debug, Clone, Copy)]
pub(super) enum Owner {
    Key,
    User,
}

impl Owner {
    fn kind(self) -> &'static str {
        match self {
            Owner::Key => "key",
            Owner::User => "user",
        }
    }
}

/// The condition that token row `t` is live: no revocation of its key or
/// its owner covers it.
pub(super) fn live(s: &str) -> String {
    format!(
        "(t.api_key_id IS NULL OR EXISTS (SELECT 1 FROM {s}.api_keys k \
           WHERE k.id = t.api_key_id AND t.sequence >= k.revoked_below)) \
         AND NOT EXISTS (SELECT 1 FROM {s}.revoked_users r \
           WHERE r.user_id = t.user_id AND t.sequence < r.revoked_below)"
    )
}

/// The columns of token row `t` as reads answer them: its expiry capped by
/// its key's cap when the token is below it.
pub(super) fn token_columns(s: &str) -> String {
    format!(
        "t.digest, t.id, t.user_id, t.scopes, t.created, \
         LEAST(t.expires, (SELECT k.capped_at FROM {s}.api_keys k \
           WHERE k.id = t.api_key_id AND t.sequence < k.capped_below)) AS expires, \
         t.api_key_id, t.last_use"
    )
}

/// Makes every token of key `id` stored so far (its row the caller has
/// locked) expire by `at`, in one write. Over an earlier cap still to come,
/// the earlier time wins for both.
pub(super) async fn cap_key_tokens(
    conn: &mut PgConnection,
    s: &str,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE {s}.api_keys SET capped_below = nextval('{s}.token_sequence'), \
           capped_at = LEAST(capped_at, $2) WHERE id = $1"
    );
    sqlx::query(&sql)
        .bind(id)
        .bind(at)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Folds up to `limit` caps passed by `now` into their keys' revocation marks
/// (their tokens below are expired, so revoked), recounts those keys' live
/// tokens and schedules their purge. Returns the keys.
pub(super) async fn fold_passed_caps(
    conn: &mut PgConnection,
    s: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "WITH passed AS (SELECT id FROM {s}.api_keys WHERE capped_at <= $1 \
           ORDER BY capped_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
         UPDATE {s}.api_keys k SET revoked_below = GREATEST(k.revoked_below, k.capped_below), \
           capped_below = NULL, capped_at = NULL, \
           live_tokens = (SELECT count(*) FROM {s}.tokens t WHERE t.api_key_id = k.id \
             AND t.sequence >= GREATEST(k.revoked_below, k.capped_below)) \
         FROM passed WHERE k.id = passed.id RETURNING k.id"
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let mut keys = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id").map_err(db)?;
        schedule_purge(conn, s, Owner::Key, &id).await?;
        keys.push(id);
    }
    Ok(keys)
}

/// Revokes every token of key `id` (whose row the caller has locked).
pub(super) async fn revoke_key_tokens(
    conn: &mut PgConnection,
    s: &str,
    id: &str,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE {s}.api_keys SET revoked_below = nextval('{s}.token_sequence'), live_tokens = 0, \
         capped_below = NULL, capped_at = NULL WHERE id = $1"
    );
    sqlx::query(&sql)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    schedule_purge(conn, s, Owner::Key, id).await
}

/// Revokes every token of `user` (whose keys the caller has locked).
pub(super) async fn revoke_user_tokens(
    conn: &mut PgConnection,
    s: &str,
    user: &str,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO {s}.revoked_users (user_id, revoked_below) \
         VALUES ($1, nextval('{s}.token_sequence')) \
         ON CONFLICT (user_id) DO UPDATE SET revoked_below = excluded.revoked_below"
    );
    sqlx::query(&sql)
        .bind(user)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    schedule_purge(conn, s, Owner::User, user).await
}

/// Marks the revoked tokens of `owner` `id` for the sweeper to purge.
pub(super) async fn schedule_purge(
    conn: &mut PgConnection,
    s: &str,
    owner: Owner,
    id: &str,
) -> Result<(), StoreError> {
    let sql =
        format!("INSERT INTO {s}.pending_purges (kind, id) VALUES ($1, $2) ON CONFLICT DO NOTHING");
    sqlx::query(&sql)
        .bind(owner.kind())
        .bind(id)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Deletes up to `limit` revoked token rows of pending purges; returns their
/// digests. A pending purge that finds nothing left to delete is done. Rows
/// another transaction holds are skipped, never waited for (two sweepers
/// never wait on each other), and a later pass deletes them.
pub(super) async fn purge_pending(
    conn: &mut PgConnection,
    s: &str,
    limit: i64,
) -> Result<Vec<SecretDigest>, StoreError> {
    let pending = format!(
        "SELECT kind, id FROM {s}.pending_purges ORDER BY kind, id LIMIT 16 \
         FOR UPDATE SKIP LOCKED"
    );
    let pending = sqlx::query(&pending)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    let mut purged = Vec::new();
    for row in &pending {
        let left = limit - purged.len() as i64;
        if left <= 0 {
            break;
        }
        let kind: String = row.try_get("kind").map_err(db)?;
        let id: String = row.try_get("id").map_err(db)?;
        let revoked = match kind.as_str() {
            "key" => format!(
                "t.api_key_id = $1 AND NOT EXISTS (SELECT 1 FROM {s}.api_keys k \
                 WHERE k.id = $1 AND t.sequence >= k.revoked_below)"
            ),
            _ => format!(
                "t.user_id = $1 AND t.sequence < \
                 (SELECT r.revoked_below FROM {s}.revoked_users r WHERE r.user_id = $1)"
            ),
        };
        let sql = format!(
            "DELETE FROM {s}.tokens WHERE digest IN (SELECT t.digest FROM {s}.tokens t \
             WHERE {revoked} LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING digest"
        );
        let rows = sqlx::query(&sql)
            .bind(&id)
            .bind(left)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        if rows.is_empty() {
            let done = format!("DELETE FROM {s}.pending_purges WHERE kind = $1 AND id = $2");
            sqlx::query(&done)
                .bind(&kind)
                .bind(&id)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
        for row in &rows {
            purged.push(super::rows::digest(row.try_get("digest").map_err(db)?)?);
        }
    }
    Ok(purged)
}
