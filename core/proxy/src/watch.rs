//! Content-based file watching for reload loops.

use std::path::PathBuf;
use std::time::Duration;

/// Watches config files by content (small files; atomic renames included), for a daemon's
/// reload loop. Comparing content rather than modification times catches Kubernetes' symlink
/// swaps of mounted ConfigMaps and never reloads a file that was only touched.
#[derive(Debug)]
pub struct FileWatch {
    files: Vec<PathBuf>,
    last: Vec<Option<Vec<u8>>>,
    tick: tokio::time::Interval,
}

impl FileWatch {
    /// Watches `files`, checking every `every` (at least a second).
    pub fn new(files: Vec<PathBuf>, every: Duration) -> Self {
        let last = Self::read(&files);
        Self {
            files,
            last,
            tick: tokio::time::interval(every.max(Duration::from_secs(1))),
        }
    }

    /// Waits until the content of a watched file changes (a file that appears or disappears
    /// counts as a change).
    pub async fn changed(&mut self) {
        loop {
            self.tick.tick().await;
            let now = Self::read(&self.files);
            if now != self.last {
                self.last = now;
                return;
            }
        }
    }

    fn read(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
        files.iter().map(|f| std::fs::read(f).ok()).collect()
    }
}
