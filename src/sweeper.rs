//! [`Sweeper`]: purges expired records in the background.

use std::time::Duration;

use tokio::{sync::oneshot, task::JoinHandle, time::MissedTickBehavior};

use crate::ScopeGate;

/// A background task purging expired tokens, keys and rotated-out secrets through
/// the store's expiry index, so its cost follows what expired, not what is stored.
///
/// Expiry never waits for the sweeper: every read refuses expired records. The
/// sweeper only reclaims space. Stop it with [`Sweeper::shutdown`]; dropping the
/// handle stops it too, at its next wake-up.
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
    /// Starts a [`Sweeper`] that purges every `every` (first run at once).
    /// Needs a tokio runtime.
    pub fn spawn_sweeper(&self, every: Duration) -> Sweeper {
        let (stop, mut stopped) = oneshot::channel();
        let gate = self.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticks.tick() => match gate.purge_expired().await {
                        Ok(purged) if purged.examined > 0 => tracing::debug!(
                            tokens = purged.tokens.len(),
                            api_keys = purged.api_keys,
                            "purged expired credentials"
                        ),
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "purging expired credentials failed"),
                    },
                }
            }
        });
        Sweeper {
            stop: Some(stop),
            task,
        }
    }
}
