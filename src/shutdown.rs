//! A shutdown signal shared by the daemon's tasks.

use tokio::sync::watch;

/// Fires once; every [`Shutdown`] clone sees it.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for the trigger.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Tells every listener to stop.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Completes once the trigger fired (or was dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    /// True once the trigger fired.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }
}
