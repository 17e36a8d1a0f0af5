//! Tasks tied to the lifetime of their owner.

use tokio::task::JoinHandle;

/// Spawned tasks that are aborted when dropped, so that a proxy which fails to start halfway,
/// or is dropped without `shutdown`, leaves nothing running.
#[derive(Debug, Default)]
pub struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    /// Adds a task.
    pub fn push(&mut self, t: JoinHandle<()>) {
        self.0.push(t);
    }

    /// Aborts every task (they stop at their next await point).
    pub fn abort_all(&self) {
        for t in &self.0 {
            t.abort();
        }
    }

    /// Aborts every task and waits until each has stopped: its future is dropped, so the
    /// listeners it owned are closed (their ports free) when this returns.
    pub async fn stop(&mut self) {
        self.abort_all();
        for t in self.0.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}
