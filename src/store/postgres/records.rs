//! [`TokenStore`] on PostgreSQL: each method one transaction (or one statement).
//!
//! Writes that touch a key lock its row first (`FOR UPDATE`), so minting, which
//! checks the key under the same lock, serializes with every change to the key.
//! Statements after the lock see every commit before it (READ COMMITTED), so a
//! token minted just before a deactivation is among the tokens it revokes
//! (see `revocations`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{postgres::PgRow, PgConnection, Row};

use super::{
    errors::{db, TimedOut},
    feed::publish,
    revocations::{self, live, token_columns, Owner},
    rows::{self, bind_key, bind_token, KEY_COLUMNS, TOKEN_COLUMNS},
    PgStore,
};
use crate::{
    api_key::{ApiKey, KeyChange, TokenFate},
    ids::{ApiKeyId, TokenId, UserId},
    scope::Scope,
    secret::SecretDigest,
    store::{
        api_key_tag, user_tag, InvalidationFeed, KeyDisposal, Page, Purged, StoreError,
        StoreErrorKind, StoreHealth, TokenStore,
    },
    token::Token,
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

/// How long after the server receives a write it may still begin it: three
/// quarters of what is left of the call's `limit`, counted from `started`. The
/// last quarter covers the trip to the server and the commit, so that a write
/// begun in time is answered before the caller gives up on it.
fn deadline(limit: std::time::Duration, started: std::time::Instant) -> std::time::Duration {
    limit.saturating_sub(started.elapsed()) * 3 / 4
}

/// A query with its parameters bound.
type Bound<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

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

    /// Counts `removed` live tokens of each of `keys` gone. Locks the keys in id
    /// order, so two purges never wait on each other's keys.
    async fn count_removed(
        &self,
        conn: &mut PgConnection,
        keys: &[String],
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let s = self.schema();
        let sql = format!(
            "WITH removed AS (SELECT id, count(*) AS n FROM unnest($1::text[]) AS id GROUP BY id), \
             locked AS (SELECT k.id FROM {s}.api_keys k JOIN removed USING (id) \
               ORDER BY k.id FOR UPDATE OF k) \
             UPDATE {s}.api_keys k SET live_tokens = greatest(k.live_tokens - removed.n, 0) \
             FROM removed, locked WHERE k.id = removed.id AND k.id = locked.id"
        );
        sqlx::query(&sql)
            .bind(keys)
            .execute(conn)
            .await
            .map_err(db)?;
        Ok(())
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
        publish(conn, &self.channel, &self.feed_key, digests).await
    }

    async fn purge(&self, now: DateTime<Utc>, limit: usize) -> Result<Purged, StoreError> {
        let s = self.schema();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        // Expired tokens, oldest first, through the expiry index; rows another
        // purge holds are left to it. Those still counted by their key are
        // uncounted.
        let sql = format!(
            "DELETE FROM {s}.tokens t WHERE digest IN (SELECT digest FROM {s}.tokens \
             WHERE expires <= $1 ORDER BY expires LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING digest, api_key_id, EXISTS (SELECT 1 FROM {s}.api_keys k \
               WHERE k.id = t.api_key_id AND t.sequence >= k.revoked_below) AS counted"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let mut counted = Vec::new();
        for row in &rows {
            if row.try_get::<bool, _>("counted").map_err(db)? {
                counted.push(row.try_get::<String, _>("api_key_id").map_err(db)?);
            }
        }
        self.count_removed(&mut tx, &counted).await?;
        let mut purged = Purged {
            tokens: digests(&rows)?,
            ..Purged::default()
        };
        purged.examined = rows.len();
        let left = limit - rows.len() as i64;
        if left > 0 {
            // Expired keys: their tokens are revoked with them, and purged below.
            let sql = format!(
                "DELETE FROM {s}.api_keys WHERE id IN (SELECT id FROM {s}.api_keys \
                 WHERE expires <= $1 ORDER BY expires LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 RETURNING id"
            );
            let keys = sqlx::query(&sql)
                .bind(now)
                .bind(left)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            for key in &keys {
                let id: String = key.try_get("id").map_err(db)?;
                revocations::schedule_purge(&mut tx, s, Owner::Key, &id).await?;
                purged.changed_keys.push(ApiKeyId::from(id));
            }
            purged.api_keys = keys.len();
            purged.examined += keys.len();
        }
        let left = limit - purged.examined as i64;
        if left > 0 {
            // Passed expiry caps: their tokens are revoked, and purged below.
            let folded = revocations::fold_passed_caps(&mut tx, s, now, left).await?;
            purged.examined += folded.len();
            purged
                .changed_keys
                .extend(folded.into_iter().map(ApiKeyId::from));
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
        // What revocations left behind: already refused everywhere, so only
        // counted, not published.
        let left = limit - purged.examined as i64;
        if left > 0 {
            let removed = revocations::purge_pending(&mut tx, s, left).await?;
            purged.examined += removed.len();
            purged.tokens.extend(removed);
        }
        tx.commit().await.map_err(db)?;
        Ok(purged)
    }
}

#[async_trait]
impl TokenStore for PgStore {
    async fn insert_token(&self, token: &Token) -> Result<(), StoreError> {
        // A copied token of a key counts towards the key's limit.
        let sql = format!(
            "WITH token AS (INSERT INTO {s}.tokens ({TOKEN_COLUMNS}) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING api_key_id) \
             UPDATE {s}.api_keys k SET live_tokens = live_tokens + 1 \
             FROM token WHERE k.id = token.api_key_id",
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
        max_tokens: u64,
    ) -> Result<bool, StoreError> {
        if token.api_key_id.is_none() {
            return Ok(false);
        }
        // One statement in its own implicit transaction, one round trip. It locks
        // the key's row and, after any concurrent change commits, re-checks the
        // key's conditions on its latest version (READ COMMITTED); they are
        // `ApiKey::may_mint`'s. Only then does it count the token and insert it, so
        // a mint past the key's limit changes nothing. The token's sequence is
        // drawn as it is inserted, after the lock (see `revocations`).
        //
        // A statement still waiting for the lock when the call gives up must not
        // mint later, once the lock is free: the `ready` step reads the clock after
        // the lock and goes on only within most of the call's remaining time, so a
        // late statement commits nothing but its lock (`deadline`).
        let s = self.schema();
        let sql = format!(
            "WITH locked AS MATERIALIZED (SELECT id, live_tokens FROM {s}.api_keys \
               WHERE id = $7 AND active AND user_id = $3 \
               AND (expires IS NULL OR expires > $5) \
               AND (digest = $9 OR (retired_digest = $9 AND retired_until > $5)) \
               AND (scope IS NULL OR $4 <@ scope) \
               AND (expires IS NULL OR $6 <= expires) \
               FOR NO KEY UPDATE), \
             ready AS MATERIALIZED (SELECT id, live_tokens FROM locked \
               WHERE clock_timestamp() < statement_timestamp() + make_interval(secs => $11)), \
             key AS (UPDATE {s}.api_keys k SET last_use = $5, live_tokens = k.live_tokens + 1 \
               FROM ready WHERE k.id = ready.id AND ready.live_tokens < $10 RETURNING k.id), \
             minted AS (INSERT INTO {s}.tokens ({TOKEN_COLUMNS}) \
               SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM key RETURNING digest) \
             SELECT (SELECT count(*) FROM locked) AS keys, (SELECT count(*) FROM ready) AS ready, \
               (SELECT count(*) FROM minted) AS minted"
        );
        let most = i64::try_from(max_tokens).unwrap_or(i64::MAX);
        let started = std::time::Instant::now();
        self.call(async {
            if token.user_id.is_none() {
                return Ok(false);
            }
            let row = bind_token(sqlx::query(&sql), token)
                .bind(&key_digest.as_bytes()[..])
                .bind(most)
                .bind(deadline(self.config.timeout, started).as_secs_f64())
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            let count = |column: &str| row.try_get::<i64, _>(column).map_err(db);
            match (count("keys")?, count("ready")?, count("minted")?) {
                (_, _, 1) => Ok(true),
                (0, _, _) => Ok(false),
                (_, 0, _) => Err(StoreError::new(
                    StoreErrorKind::Unavailable,
                    TimedOut(self.config.timeout),
                )),
                _ => Err(StoreError::from_kind(StoreErrorKind::TooManyTokens)),
            }
        })
        .await
    }

    async fn token_by_digest(&self, digest: &SecretDigest) -> Result<Option<Token>, StoreError> {
        let s = self.schema();
        let sql = format!(
            "SELECT {columns} FROM {s}.tokens t WHERE digest = $1 AND {live}",
            columns = token_columns(s),
            live = live(s)
        );
        let query = sqlx::query(&sql).bind(&digest.as_bytes()[..]);
        self.read_one(query, rows::token).await
    }

    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError> {
        let s = self.schema();
        let sql = format!(
            "SELECT {columns} FROM {s}.tokens t WHERE id = $1 AND {live}",
            columns = token_columns(s),
            live = live(s)
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
        let s = self.schema();
        let sql = format!(
            "SELECT {columns} FROM {s}.tokens t \
             WHERE ($1::bytea IS NULL OR digest > $1) AND {live} ORDER BY digest LIMIT $2",
            columns = token_columns(s),
            live = live(s)
        );
        let query = sqlx::query(&sql)
            .bind(after.map(|d| &d.as_bytes()[..]))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        self.read_all(query, rows::token).await
    }

    async fn tokens_of_user(&self, user: &UserId, page: Page) -> Result<Vec<Token>, StoreError> {
        let s = self.schema();
        let sql = format!(
            "SELECT {columns} FROM {s}.tokens t WHERE user_id = $1 AND {live} \
             ORDER BY created, id COLLATE \"C\" LIMIT $2 OFFSET $3",
            columns = token_columns(s),
            live = live(s)
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
        let s = self.schema();
        let sql = format!(
            "UPDATE {s}.tokens t SET scopes = ARRAY(SELECT DISTINCT unnest(scopes || $2::text[]) \
             ORDER BY 1) WHERE id = $1 AND {live} RETURNING {columns}",
            columns = token_columns(s),
            live = live(s)
        );
        self.call(async {
            let mut tx = self.begin().await?;
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
        let s = self.schema();
        let sql = format!(
            "WITH gone AS (DELETE FROM {s}.tokens t WHERE id = $1 AND {live} \
               RETURNING {columns}), \
             counted AS (UPDATE {s}.api_keys k SET live_tokens = greatest(live_tokens - 1, 0) \
               FROM gone WHERE k.id = gone.api_key_id) \
             SELECT {TOKEN_COLUMNS} FROM gone",
            columns = token_columns(s),
            live = live(s)
        );
        self.call(async {
            let mut tx = self.begin().await?;
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
        // A row with this id deleted earlier may have left tokens to purge: the
        // new key's tokens start after them.
        let sql = format!(
            "INSERT INTO {s}.api_keys ({KEY_COLUMNS}, revoked_below) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
               nextval('{s}.token_sequence'))",
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
            let mut tx = self.begin().await?;
            let Some(mut key) = self.key_for_update(&mut tx, id).await? else {
                return Ok(None);
            };
            match change.apply(&mut key) {
                TokenFate::Keep => {}
                TokenFate::Revoke => {
                    revocations::revoke_key_tokens(&mut tx, self.schema(), id.as_str()).await?
                }
                TokenFate::ExpireBy(at) => {
                    revocations::cap_key_tokens(&mut tx, self.schema(), id.as_str(), at).await?
                }
            }
            self.update_key(&mut tx, &key).await?;
            // Other replicas' caches hold the key under its digests, and its
            // tokens under theirs: its tag makes them all stale, whatever the change.
            self.publish(&mut tx, &[api_key_tag(id)]).await?;
            tx.commit().await.map_err(db)?;
            Ok(Some((key, Vec::new())))
        })
        .await
    }

    async fn delete_api_key(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<(ApiKey, Vec<SecretDigest>)>, StoreError> {
        self.call(async {
            let mut tx = self.begin().await?;
            let Some(key) = self.key_for_update(&mut tx, id).await? else {
                return Ok(None);
            };
            let s = self.schema();
            let sql = format!("DELETE FROM {s}.api_keys WHERE id = $1");
            sqlx::query(&sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            // Its tokens went with it: no key row, no live token.
            revocations::schedule_purge(&mut tx, s, Owner::Key, id.as_str()).await?;
            self.publish(&mut tx, &[api_key_tag(id)]).await?;
            tx.commit().await.map_err(db)?;
            Ok(Some((key, Vec::new())))
        })
        .await
    }

    async fn revoke_user(
        &self,
        user: &UserId,
        keys: KeyDisposal,
    ) -> Result<Vec<SecretDigest>, StoreError> {
        let s = self.schema();
        // Keys first: their row locks wait for any mint in flight, so the
        // revocation below comes after what those mints committed.
        let dispose = match keys {
            KeyDisposal::Deactivate => format!(
                "UPDATE {s}.api_keys SET active = false, live_tokens = 0 WHERE id IN \
                 (SELECT id FROM {s}.api_keys WHERE user_id = $1 ORDER BY id FOR UPDATE)"
            ),
            KeyDisposal::Delete => format!(
                "DELETE FROM {s}.api_keys WHERE id IN \
                 (SELECT id FROM {s}.api_keys WHERE user_id = $1 ORDER BY id FOR UPDATE)"
            ),
        };
        self.call(async {
            let mut tx = self.begin().await?;
            sqlx::query(&dispose)
                .bind(user.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            revocations::revoke_user_tokens(&mut tx, s, user.as_str()).await?;
            self.publish(&mut tx, &[user_tag(user)]).await?;
            tx.commit().await.map_err(db)?;
            Ok(Vec::new())
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
