//! The access log: JSON lines written on stderr by a thread of their own through a bounded queue,
//! so that a slow or stalled reader of stderr never blocks the server. A line that finds the queue
//! full is dropped (the server counts it in `entitle_edge_access_log_dropped_total`).

use std::io::Write;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

/// Lines waiting to be written, at most.
pub const QUEUE_LINES: usize = 8192;

/// The sending side of the access log.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<String>,
}

/// Resolves when the writer has written every queued line and stopped.
#[derive(Debug)]
pub struct Flushed(Receiver<()>);

impl AccessLog {
    /// Starts the writer thread.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start() -> Result<(AccessLog, Flushed), String> {
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE_LINES);
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("entitle-access-log".to_owned())
            .spawn(move || {
                write_lines(&rx);
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok((AccessLog { tx }, Flushed(done)))
    }

    /// Queues one line (without its newline); never blocks. False when the line was dropped
    /// (the queue is full).
    pub fn line(&self, line: String) -> bool {
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

impl Flushed {
    /// Waits up to `limit` for the writer to finish (every [`AccessLog`] must be dropped first).
    pub fn wait(self, limit: Duration) {
        match self.0.recv_timeout(limit) {
            Ok(()) | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
    }
}

/// Writes lines as they come, in batches, until every sender is gone.
fn write_lines(rx: &Receiver<String>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    while let Ok(first) = rx.recv() {
        let _ = writeln!(out, "{first}");
        while let Ok(next) = rx.try_recv() {
            let _ = writeln!(out, "{next}");
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, rx) = mpsc::sync_channel(2);
        let log = AccessLog { tx };
        let queued: Vec<bool> = (0..4).map(|i| log.line(i.to_string())).collect();
        assert_eq!(queued, [true, true, false, false]);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["0", "1"]);
    }
}
