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

/// Revokes every token of key `id` (whose row the caller has locked).
pub(super) async fn revoke_key_tokens(
    conn: &mut PgConnection,
    s: &str,
    id: &str,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE {s}.api_keys SET revoked_below = nextval('{s}.token_sequence'), live_tokens = 0 \
         WHERE id = $1"
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
