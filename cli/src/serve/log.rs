//! The access log: JSON lines written on stderr by a thread of their own through a bounded queue,
//! so that a slow or stalled reader of stderr never blocks the server. The queue holds at most
//! [`QUEUE_LINES`] lines and [`QUEUE_BYTES`] bytes (a request path may be 16 KiB long); a line that
//! does not fit is dropped (the server counts it in `entitle_edge_access_log_dropped_total`).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// Lines waiting to be written, at most.
pub const QUEUE_LINES: usize = 8192;

/// Bytes of lines waiting to be written, at most.
pub const QUEUE_BYTES: usize = 4 << 20;

/// The sending side of the access log.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<String>,
    /// Bytes queued and not yet written.
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
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
        let queued = Arc::new(AtomicUsize::new(0));
        let written = Arc::clone(&queued);
        std::thread::Builder::new()
            .name("entitle-access-log".to_owned())
            .spawn(move || {
                write_lines(&rx, &written, std::io::stderr());
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let log = AccessLog {
            tx,
            queued,
            max_bytes: QUEUE_BYTES,
        };
        Ok((log, Flushed(done)))
    }

    /// Queues one line (without its newline); never blocks. False when the line was dropped
    /// (the queue is full).
    pub fn line(&self, line: String) -> bool {
        let len = line.len();
        if self.queued.fetch_add(len, Ordering::AcqRel) + len > self.max_bytes {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(len, Ordering::AcqRel);
                false
            }
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

/// Writes lines to `to` as they come, in batches, until every sender is gone; `queued` counts down
/// the bytes of each line taken off the queue.
fn write_lines(rx: &Receiver<String>, queued: &AtomicUsize, to: impl Write) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, to);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(line) = next {
            queued.fetch_sub(line.len(), Ordering::AcqRel);
            let _ = writeln!(out, "{line}");
            next = rx.try_recv().ok();
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
        let log = AccessLog {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            max_bytes: 100,
        };
        let queued: Vec<bool> = (0..4).map(|i| log.line(i.to_string())).collect();
        assert_eq!(queued, [true, true, false, false]);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["0", "1"]);
        assert_eq!(
            log.queued.load(Ordering::Relaxed),
            2,
            "lines dropped are not counted"
        );
    }

    #[test]
    fn long_lines_are_bounded_by_bytes() {
        let (tx, rx) = mpsc::sync_channel(100);
        let log = AccessLog {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            max_bytes: 100,
        };
        assert!(log.line("a".repeat(60)));
        assert!(!log.line("b".repeat(60)), "160 bytes would be queued");
        assert!(log.line("c".repeat(40)));
        assert!(!log.line("d".to_owned()));
        // Written lines make room again.
        let (done_tx, done) = mpsc::channel();
        let queued = Arc::clone(&log.queued);
        let writer = std::thread::spawn(move || {
            let mut text = Vec::new();
            write_lines(&rx, &queued, &mut text);
            let _ = done_tx.send(());
            text
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while log.queued.load(Ordering::Acquire) > 0 {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(log.line("e".repeat(100)));
        drop(log);
        Flushed(done).wait(Duration::from_secs(10));
        let text = String::from_utf8(writer.join().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            text,
            format!(
                "{}\n{}\n{}\n",
                "a".repeat(60),
                "c".repeat(40),
                "e".repeat(100)
            )
        );
    }
}
