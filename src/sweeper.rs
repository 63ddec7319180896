//! [`Sweeper`]: purges expired records in the background.

use std::time::Duration;

use tokio::{sync::oneshot, task::JoinHandle, time::MissedTickBehavior};

use crate::gate::ScopeGate;

/// A background task purging expired tokens, keys and rotated-out secrets through
/// the store's expiry index, so its cost follows what expired, not what is stored,
/// and the records of tokens revoked with their key or user.
///
/// Neither expiry nor revocation waits for the sweeper: every read refuses expired
/// and revoked records. The sweeper only reclaims space, and keeps listings fast:
/// a revocation of a key or user wakes it at once, as records it leaves make
/// listing their owner's tokens slower until they are gone. Its periodic passes
/// start at a random point of the first period, so replicas started together do
/// not sweep together. Stop it with [`Sweeper::shutdown`]; dropping the handle
/// stops it too, at its next wake-up.
#[derive(Debug)]
pub struct Sweeper {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Sweeper {
    /// Stops the sweeper and waits for a purge in progress to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl ScopeGate {
    /// Starts a [`Sweeper`] that purges at once, then every `every`, and after
    /// each revocation of a key's or user's tokens. Needs a tokio runtime.
    pub fn spawn_sweeper(&self, every: Duration) -> Sweeper {
        let (stop, mut stopped) = oneshot::channel();
        let gate = self.clone();
        let wanted = self.purge_wanted();
        let task = tokio::spawn(async move {
            gate.sweep().await;
            let first = tokio::time::Instant::now() + every.mul_f64(rand::random::<f64>());
            let mut ticks = tokio::time::interval_at(first, every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => gate.sweep().await,
                    _ = wanted.notified() => gate.sweep().await,
                }
            }
        });
        Sweeper {
            stop: Some(stop),
            task,
        }
    }

    /// One pass of a sweeper.
    async fn sweep(&self) {
        match self.purge_expired().await {
            Ok(purged) if purged.examined > 0 => tracing::debug!(
                tokens = purged.tokens.len(),
                api_keys = purged.api_keys,
                "purged expired and revoked credentials"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "purging expired credentials failed"),
        }
    }
}
