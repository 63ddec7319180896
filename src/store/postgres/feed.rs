//! Cross-instance invalidation over `LISTEN/NOTIFY`.
//!
//! Every revoking write publishes the digests it removed with `pg_notify` inside
//! its own transaction, so the notification goes out exactly when the write
//! commits. Each instance's [`PgInvalidationFeed`] listens on a dedicated
//! connection and drops those digests from its cache. A heartbeat notification,
//! sent by every feed, proves the connection alive: after `silence_limit` without
//! any notification (or at once, if the connection drops) the feed declares itself
//! disconnected, and the cache answers from the database until it is back.

use std::time::Duration;

use sqlx::{postgres::PgListener, PgConnection, PgPool};

use super::errors::db;
use crate::{
    secret::SecretDigest,
    store::{InvalidationFeed, InvalidationSink, StoreError},
};

/// Digests per notification: 100 × 65 bytes stays under PostgreSQL's 8000-byte payload.
const PER_NOTIFICATION: usize = 100;
/// Payload prefix of a revocation; the rest is comma-separated hex digests.
const REVOKED: &str = "r:";
/// Payload of a heartbeat.
const HEARTBEAT: &str = "ping";
/// Wait between attempts to (re)connect the listener.
const RECONNECT_EVERY: Duration = Duration::from_millis(100);

/// Publishes `digests` on `channel`, delivered when the surrounding transaction commits.
pub(super) async fn publish(
    conn: &mut PgConnection,
    channel: &str,
    digests: &[SecretDigest],
) -> Result<(), StoreError> {
    if digests.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = digests
        .chunks(PER_NOTIFICATION)
        .map(|chunk| {
            let hex: Vec<String> = chunk.iter().map(SecretDigest::to_hex).collect();
            format!("{REVOKED}{}", hex.join(","))
        })
        .collect();
    sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .bind(channel)
        .bind(payloads)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// What a notification says.
#[derive(Debug, PartialEq)]
enum Message {
    Heartbeat,
    Revoked(Vec<SecretDigest>),
    /// Not ours to read (a newer format?): treat as "anything may be revoked".
    Unreadable,
}

fn parse(payload: &str) -> Message {
    if payload == HEARTBEAT {
        return Message::Heartbeat;
    }
    let Some(list) = payload.strip_prefix(REVOKED) else {
        return Message::Unreadable;
    };
    list.split(',')
        .map(SecretDigest::from_hex)
        .collect::<Option<Vec<_>>>()
        .map_or(Message::Unreadable, Message::Revoked)
}

/// The [`InvalidationFeed`] of a [`PgStore`](super::PgStore): listens for the
/// revocations every instance publishes. Made by
/// [`PgStore::notifications`](super::PgStore::notifications).
#[derive(Debug, Clone)]
pub struct PgInvalidationFeed {
    pub(super) pool: PgPool,
    pub(super) channel: String,
    pub(super) heartbeat: Duration,
    pub(super) silence_limit: Duration,
}

impl InvalidationFeed for PgInvalidationFeed {
    fn start(self: Box<Self>, sink: InvalidationSink) {
        tokio::spawn(self.clone().heartbeats(sink.clone()));
        tokio::spawn(self.listen(sink));
    }
}

impl PgInvalidationFeed {
    /// Sends a heartbeat every `heartbeat` while the cache lives.
    async fn heartbeats(self: Box<Self>, sink: InvalidationSink) {
        let mut every = tokio::time::interval(self.heartbeat);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !sink.is_closed() {
            every.tick().await;
            let ping = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.channel)
                .bind(HEARTBEAT)
                .execute(&self.pool);
            // A failed ping shows as silence on the listener: nothing to do here.
            let _ = tokio::time::timeout(self.heartbeat, ping).await;
        }
    }

    /// A connection that is listening on the channel.
    async fn subscribe(&self) -> Result<PgListener, sqlx::Error> {
        let connect = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(&self.channel).await?;
            Ok(listener)
        };
        tokio::time::timeout(self.silence_limit, connect)
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// Listens until the cache is dropped, reconnecting whenever the connection
    /// is lost; the cache is bypassed while it is.
    async fn listen(self: Box<Self>, sink: InvalidationSink) {
        let mut down: Option<(std::time::Instant, String)> = None;
        while !sink.is_closed() {
            let mut listener = match self.subscribe().await {
                Ok(listener) => listener,
                Err(err) => {
                    if down.is_none() {
                        tracing::warn!(error = %err, "token cache invalidation feed cannot connect: the cache is bypassed");
                        down = Some((std::time::Instant::now(), err.to_string()));
                    }
                    tokio::time::sleep(RECONNECT_EVERY).await;
                    continue;
                }
            };
            sink.connected();
            match down.take() {
                Some((since, _)) => tracing::info!(
                    after = ?since.elapsed(),
                    "token cache invalidation feed connected: the cache serves again"
                ),
                None => tracing::debug!("token cache invalidation feed connected"),
            }
            let why = self.relay(&mut listener, &sink).await;
            sink.disconnected();
            if !sink.is_closed() {
                tracing::warn!(reason = %why, "token cache invalidation feed lost: the cache is bypassed until it reconnects");
                down = Some((std::time::Instant::now(), why));
            }
        }
    }

    /// Passes revocations to the sink until the connection fails or falls silent;
    /// returns why it stopped.
    async fn relay(&self, listener: &mut PgListener, sink: &InvalidationSink) -> String {
        loop {
            if sink.is_closed() {
                return "the cache was dropped".into();
            }
            let notification =
                match tokio::time::timeout(self.silence_limit, listener.try_recv()).await {
                    Ok(Ok(Some(notification))) => notification,
                    Ok(Ok(None)) => return "the connection was closed".into(),
                    Ok(Err(err)) => return err.to_string(),
                    Err(_) => {
                        return format!("no heartbeat for {:?}", self.silence_limit);
                    }
                };
            match parse(notification.payload()) {
                Message::Heartbeat => {}
                Message::Revoked(digests) => sink.revoked(&digests),
                Message::Unreadable => {
                    sink.disconnected();
                    sink.connected();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_unknown_ones_are_unreadable() {
        let digests = [
            SecretDigest::from_bytes([7; 32]),
            SecretDigest::from_bytes([9; 32]),
        ];
        let hex: Vec<String> = digests.iter().map(SecretDigest::to_hex).collect();
        let payload = format!("{REVOKED}{}", hex.join(","));
        assert!(payload.len() * PER_NOTIFICATION / 2 < 8000);
        assert_eq!(parse(&payload), Message::Revoked(digests.to_vec()));
        assert_eq!(parse(HEARTBEAT), Message::Heartbeat);
        assert_eq!(parse("r:zz"), Message::Unreadable);
        assert_eq!(parse("v2:whatever"), Message::Unreadable);
    }
}
