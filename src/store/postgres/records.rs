//! [`TokenStore`] on PostgreSQL: each method one transaction (or one statement).
//!
//! Writes that touch a key lock its row first (`FOR UPDATE`), so minting, which
//! checks the key under the same lock, serializes with every change to the key.
//! Statements after the lock see every commit before it (READ COMMITTED), so a
//! token minted just before a deactivation is among the tokens it deletes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{postgres::PgRow, PgConnection, Row};

use super::{
    errors::db,
    feed::publish,
    rows::{self, bind_key, bind_token, KEY_COLUMNS, TOKEN_COLUMNS},
    PgStore,
};
use crate::{
    api_key::TokenFate,
    secret::SecretDigest,
    store::{
        api_key_tag, user_tag, InvalidationFeed, KeyDisposal, Page, Purged, StoreError,
        StoreHealth, TokenStore,
    },
    ApiKey, ApiKeyId, KeyChange, Scope, Token, TokenId, UserId,
};

fn digests(rows: &[PgRow]) -> Result<Vec<SecretDigest>, StoreError> {
    rows.iter()
        .map(|row| rows::digest(row.try_get("digest").map_err(db)?))
        .collect()
}

fn page_bounds(page: Page) -> (i64, i64) {
    let clamp = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    (clamp(page.limit), clamp(page.offset))
}

/// A query with its parameters bound.
type Bound<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// What deleting a key's tokens does with those another transaction holds.
#[derive(Clone, Copy)]
enum HeldTokens {
    /// Waits for them: a revocation must delete every token of its key.
    Wait,
    /// Skips them, for the purge of an expired key. A purge must never wait on
    /// the tokens another purge took, or two sweepers, each holding some of the
    /// other's key's tokens, deadlock. The tokens skipped are expired (a token
    /// never outlives its key), so they authenticate nothing, and the purge
    /// holding them deletes them, or a later one does.
    Skip,
}

impl PgStore {
    /// Runs a read of at most one row under the time limit, decoded with `decode`.
    async fn read_one<T>(
        &self,
        query: Bound<'_>,
        decode: fn(&PgRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.call(async {
            let row = query.fetch_optional(&self.pool).await.map_err(db)?;
            row.as_ref().map(decode).transpose()
        })
        .await
    }

    /// Runs a read of rows under the time limit, decoded with `decode`.
    async fn read_all<T>(
        &self,
        query: Bound<'_>,
        decode: fn(&PgRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.call(async {
            let rows = query.fetch_all(&self.pool).await.map_err(db)?;
            rows.iter().map(decode).collect()
        })
        .await
    }

    async fn key_for_update(
        &self,
        conn: &mut PgConnection,
        id: &ApiKeyId,
    ) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM {s}.api_keys WHERE id = $1 FOR UPDATE",
            s = self.schema()
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(conn)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::api_key).transpose()
    }

    /// Writes every column of `key` over its row.
    async fn update_key(&self, conn: &mut PgConnection, key: &ApiKey) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {s}.api_keys SET user_id = $2, name = $3, scope = $4, token_duration = $5, \
             active = $6, created = $7, last_use = $8, expires = $9, digest = $10, start = $11, \
             retired_digest = $12, retired_until = $13, locked = $14 WHERE id = $1",
            s = self.schema()
        );
        bind_key(sqlx::query(&sql), key)
            .execute(conn)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Deletes the tokens minted from `key`; returns their digests. `held` says
    /// what becomes of those another transaction holds.
    async fn delete_tokens_of_key(
        &self,
        conn: &mut PgConnection,
        key: &ApiKeyId,
        held: HeldTokens,
    ) -> Result<Vec<SecretDigest>, StoreError> {
        let s = self.schema();
        let sql = match held {
            HeldTokens::Wait => {
                format!("DELETE FROM {s}.tokens WHERE api_key_id = $1 RETURNING digest")
            }
            HeldTokens::Skip => format!(
                "DELETE FROM {s}.tokens WHERE digest IN (SELECT digest FROM {s}.tokens \
                 WHERE api_key_id = $1 FOR UPDATE SKIP LOCKED) RETURNING digest"
            ),
        };
        let rows = sqlx::query(&sql)
            .bind(key.as_str())
            .fetch_all(conn)
            .await
            .map_err(db)?;
        digests(&rows)
    }

    /// Moves the expiry of `key`'s tokens that expire after `at` to `at`.
    async fn cap_tokens_of_key(
        &self,
        conn: &mut PgConnection,
        key: &ApiKeyId,
        at: DateTime<Utc>,
    ) -> Result<Vec<SecretDigest>, StoreError> {
        let sql = format!(
            "UPDATE {s}.tokens SET expires = $2 WHERE api_key_id = $1 AND expires > $2 \
             RETURNING digest",
            s = self.schema()
        );
        let rows = sqlx::query(&sql)
            .bind(key.as_str())
            .bind(at)
            .fetch_all(conn)
            .await
            .map_err(db)?;
        digests(&rows)
    }

    /// Moves `last_use` of row `id` of `table` forward to `at`.
    async fn touch(&self, table: &str, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {s}.{table} SET last_use = $2 \
             WHERE id = $1 AND (last_use IS NULL OR last_use < $2)",
            s = self.schema()
        );
        self.call(async {
            sqlx::query(&sql)
                .bind(id)
                .bind(at)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn publish(
        &self,
        conn: &mut PgConnection,
        digests: &[SecretDigest],
    ) -> Result<(), StoreError> {
        publish(conn, &self.channel, digests).await
    }

    async fn purge(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        let s = self.schema();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Expired tokens, oldest first, through the expiry index; rows another
        // purge holds are left to it.
        let sql = format!(
            "DELETE FROM {s}.tokens WHERE digest IN (SELECT digest FROM {s}.tokens \
             WHERE expires <= $1 ORDER BY expires LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING digest"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let mut purged = Purged {
            tokens: digests(&rows)?,
            ..Purged::default()
        };
        purged.examined = rows.len();
        let left = limit - rows.len() as i64;
        if left > 0 {
            let sql = format!(
                "SELECT id FROM {s}.api_keys WHERE expires <= $1 ORDER BY expires LIMIT $2 \
                 FOR UPDATE SKIP LOCKED"
            );
            let keys = sqlx::query(&sql)
                .bind(now)
                .bind(left)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            for key in &keys {
                let id = ApiKeyId::from(key.try_get::<String, _>("id").map_err(db)?);
                purged.tokens.extend(
                    self.delete_tokens_of_key(&mut tx, &id, HeldTokens::Skip)
                        .await?,
                );
                let sql = format!("DELETE FROM {s}.api_keys WHERE id = $1");
                sqlx::query(&sql)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                purged.changed_keys.push(id);
            }
            purged.api_keys = keys.len();
            purged.examined += keys.len();
        }
        let left = limit - purged.examined as i64;
        if left > 0 {
            let sql = format!(
                "UPDATE {s}.api_keys SET retired_digest = NULL, retired_until = NULL \
                 WHERE id IN (SELECT id FROM {s}.api_keys WHERE retired_until <= $1 \
                 ORDER BY retired_until LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id"
            );
            let done = sqlx::query(&sql)
                .bind(now)
                .bind(left)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            purged.examined += done.len();
            for row in &done {
                let id = row.try_get::<String, _>("id").map_err(db)?;
                purged.changed_keys.push(ApiKeyId::from(id));
            }
        }
        let tags = purged.changed_keys.iter().map(api_key_tag);
        let revoked: Vec<SecretDigest> = purged.tokens.iter().copied().chain(tags).collect();
        self.publish(&mut tx, &revoked).await?;
        tx.commit().await.map_err(db)?;
        Ok(purged)
    }
}

#[async_trait]
impl TokenStore for PgStore {
    async fn insert_token(&self, token: &Token) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {s}.tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            s = self.schema()
        );
        self.call(async {
            bind_token(sqlx::query(&sql), token)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn mint_token(
        &self,
        token: &Token,
        key_digest: &SecretDigest,
    ) -> Result<bool, StoreError> {
        if token.api_key_id.is_none() {
            return Ok(false);
        }
        // One statement: the UPDATE takes the key's row lock and, after any
        // concurrent change commits, re-checks the key's conditions on its latest
        // version (READ COMMITTED); the token is inserted only if they hold. The
        // conditions are `ApiKey::may_mint`'s. It runs in
        // an explicit transaction so that a call abandoned at its time limit (the
        // statement still waiting for a lock on the server) can never commit later.
        let s = self.schema();
        let sql = format!(
            "WITH key AS (UPDATE {s}.api_keys SET last_use = $5 \
               WHERE id = $7 AND active AND user_id = $3 \
               AND (expires IS NULL OR expires > $5) \
               AND (digest = $9 OR (retired_digest = $9 AND retired_until > $5)) \
               AND (scope IS NULL OR $4 <@ scope) \
               AND (expires IS NULL OR $6 <= expires) \
               RETURNING id) \
             INSERT INTO {s}.tokens ({TOKEN_COLUMNS}) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM key RETURNING digest"
        );
        self.call(async {
            if token.user_id.is_none() {
                return Ok(false);
            }
            let mut tx = self.pool.begin().await.map_err(db)?;
            let inserted = bind_token(sqlx::query(&sql), token)
                .bind(&key_digest.as_bytes()[..])
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(inserted.is_some())
        })
        .await
    }

    async fn token_by_digest(&self, digest: &SecretDigest) -> Result<Option<Token>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM {s}.tokens WHERE digest = $1",
            s = self.schema()
        );
        let query = sqlx::query(&sql).bind(&digest.as_bytes()[..]);
        self.read_one(query, rows::token).await
    }

    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM {s}.tokens WHERE id = $1",
            s = self.schema()
        );
        let query = sqlx::query(&sql).bind(id.as_str());
        self.read_one(query, rows::token).await
    }

    async fn api_keys_after(
        &self,
        after: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM {s}.api_keys WHERE $1::text IS NULL OR id > $1 COLLATE \"C\" \
             ORDER BY id COLLATE \"C\" LIMIT $2",
            s = self.schema()
        );
        let query = sqlx::query(&sql)
            .bind(after.map(ApiKeyId::as_str))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.read_all(query, rows::api_key).await
    }

    async fn tokens_after(
        &self,
        after: Option<&SecretDigest>,
        limit: usize,
    ) -> Result<Vec<Token>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM {s}.tokens WHERE $1::bytea IS NULL OR digest > $1 \
             ORDER BY digest LIMIT $2",
            s = self.schema()
        );
        let query = sqlx::query(&sql)
            .bind(after.map(|d| &d.as_bytes()[..]))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.read_all(query, rows::token).await
    }

    async fn tokens_of_user(&self, user: &UserId, page: Page) -> Result<Vec<Token>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM {s}.tokens WHERE user_id = $1 \
             ORDER BY created, id COLLATE \"C\" LIMIT $2 OFFSET $3",
            s = self.schema()
        );
        let (limit, offset) = page_bounds(page);
        let query = sqlx::query(&sql)
            .bind(user.as_str())
            .bind(limit)
            .bind(offset);
        self.read_all(query, rows::token).await
    }

    async fn add_token_scopes(
        &self,
        id: &TokenId,
        scopes: &[Scope],
    ) -> Result<Option<Token>, StoreError> {
        let sql = format!(
            "UPDATE {s}.tokens SET scopes = ARRAY(SELECT DISTINCT unnest(scopes || $2::text[]) \
             ORDER BY 1) WHERE id = $1 RETURNING {TOKEN_COLUMNS}",
            s = self.schema()
        );
        self.call(async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let row = sqlx::query(&sql)
                .bind(id.as_str())
                .bind(rows::scope_names(scopes))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let token = row.as_ref().map(rows::token).transpose()?;
            if let Some(token) = &token {
                // Other instances must not keep serving the narrower copy.
                self.publish(&mut tx, &[token.digest]).await?;
            }
            tx.commit().await.map_err(db)?;
            Ok(token)
        })
        .await
    }

    async fn delete_token(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let sql = format!(
            "DELETE FROM {s}.tokens WHERE id = $1 RETURNING {TOKEN_COLUMNS}",
            s = self.schema()
        );
        self.call(async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let row = sqlx::query(&sql)
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            let token = row.as_ref().map(rows::token).transpose()?;
            if let Some(token) = &token {
                self.publish(&mut tx, &[token.digest]).await?;
            }
            tx.commit().await.map_err(db)?;
            Ok(token)
        })
        .await
    }

    async fn touch_token(&self, id: &TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.touch("tokens", id.as_str(), at).await
    }

    async fn touch_api_key(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.touch("api_keys", id.as_str(), at).await
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {s}.api_keys ({KEY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            s = self.schema()
        );
        self.call(async {
            bind_key(sqlx::query(&sql), key)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn api_key_by_id(&self, id: &ApiKeyId) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM {s}.api_keys WHERE id = $1",
            s = self.schema()
        );
        let query = sqlx::query(&sql).bind(id.as_str());
        self.read_one(query, rows::api_key).await
    }

    async fn api_key_by_digest(&self, digest: &SecretDigest) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM {s}.api_keys WHERE digest = $1 OR retired_digest = $1",
            s = self.schema()
        );
        let query = sqlx::query(&sql).bind(&digest.as_bytes()[..]);
        self.read_one(query, rows::api_key).await
    }

    async fn api_keys_of_user(&self, user: &UserId, page: Page) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM {s}.api_keys WHERE user_id = $1 \
             ORDER BY created, id COLLATE \"C\" LIMIT $2 OFFSET $3",
            s = self.schema()
        );
        let (limit, offset) = page_bounds(page);
        let query = sqlx::query(&sql)
            .bind(user.as_str())
            .bind(limit)
            .bind(offset);
        self.read_all(query, rows::api_key).await
    }

    async fn modify_api_key(
        &self,
        id: &ApiKeyId,
        change: &KeyChange,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.call(async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let Some(mut key) = self.key_for_update(&mut tx, id).await? else {
                return Ok(None);
            };
            let removed = match change.apply(&mut key) {
                TokenFate::Keep => Vec::new(),
                TokenFate::Revoke => {
                    self.delete_tokens_of_key(&mut tx, id, HeldTokens::Wait)
                        .await?
                }
                TokenFate::ExpireBy(at) => self.cap_tokens_of_key(&mut tx, id, at).await?,
            };
            self.update_key(&mut tx, &key).await?;
            // Other replicas' caches hold the key itself under its digests: its tag
            // makes them all stale, whatever the change.
            let tag = api_key_tag(id);
            self.publish(&mut tx, &[&removed[..], &[tag]].concat())
                .await?;
            tx.commit().await.map_err(db)?;
            Ok(Some((key, removed)))
        })
        .await
    }

    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.call(async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let Some(key) = self.key_for_update(&mut tx, id).await? else {
                return Ok(None);
            };
            let removed = self
                .delete_tokens_of_key(&mut tx, id, HeldTokens::Wait)
                .await?;
            let sql = format!("DELETE FROM {s}.api_keys WHERE id = $1", s = self.schema());
            sqlx::query(&sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let tag = api_key_tag(id);
            self.publish(&mut tx, &[&removed[..], &[tag]].concat())
                .await?;
            tx.commit().await.map_err(db)?;
            Ok(Some((key, removed)))
        })
        .await
    }

    async fn revoke_user(
        &self,
        user: &UserId,
        keys: KeyDisposal,
    ) -> Result<Vec<SecretDigest>, StoreError> {
        let s = self.schema();
        // Keys first: their row locks wait for any mint in flight, so the token
        // delete below sees what those mints committed.
        let dispose = match keys {
            KeyDisposal::Deactivate => format!(
                "UPDATE {s}.api_keys SET active = false WHERE id IN \
                 (SELECT id FROM {s}.api_keys WHERE user_id = $1 ORDER BY id FOR UPDATE)"
            ),
            KeyDisposal::Delete => format!(
                "DELETE FROM {s}.api_keys WHERE id IN \
                 (SELECT id FROM {s}.api_keys WHERE user_id = $1 ORDER BY id FOR UPDATE)"
            ),
        };
        let tokens = format!("DELETE FROM {s}.tokens WHERE user_id = $1 RETURNING digest");
        self.call(async {
            let mut tx = self.pool.begin().await.map_err(db)?;
            sqlx::query(&dispose)
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let rows = sqlx::query(&tokens)
                .bind(user.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            let removed = digests(&rows)?;
            let tag = user_tag(user);
            self.publish(&mut tx, &[&removed[..], &[tag]].concat())
                .await?;
            tx.commit().await.map_err(db)?;
            Ok(removed)
        })
        .await
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        self.call(self.purge(now, limit)).await
    }

    fn invalidation_feed(&self) -> Option<Box<dyn InvalidationFeed>> {
        Some(Box::new(self.notifications()))
    }

    async fn health(&self) -> StoreHealth {
        if !self.health.current().is_healthy() {
            // Ask the database, so a recovered one is reported without waiting
            // for traffic.
            let _ = self
                .call(async {
                    sqlx::query("SELECT 1")
                        .execute(&self.pool)
                        .await
                        .map_err(db)
                })
                .await;
        }
        self.health.current()
    }
}
