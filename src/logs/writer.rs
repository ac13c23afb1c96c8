//! The log writer: one dedicated thread owns every log file. Request threads
//! hand it complete lines through a bounded queue and never wait: when the
//! queue is full the line is dropped and counted. Files are opened with
//! O_APPEND; a line is never split across two `write` calls (lines that
//! arrive together are written together), so rotation with `copytruncate`
//! leaves no hole and concurrent writers never interleave inside a line.

use crate::metrics;
use log::warn;
use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines that may wait for the writer thread.
const QUEUE_LINES: usize = 65_536;
/// Largest single write (many lines) the writer makes.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// After writing a batch the writer rests this long, so that request threads
/// append to the queue without waking it for every line (one wake-up per
/// batch instead of one per request). Lines still reach the disk within
/// milliseconds.
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// How often a persistent write error is repeated in the diagnostics log.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// A log file, identified by its path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct LogFile(Arc<PathBuf>);

impl LogFile {
    pub(crate) fn new(path: PathBuf) -> LogFile {
        LogFile(Arc::new(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Queue one complete line (ending in `\n`) for this file.
    pub(crate) fn append(&self, line: Vec<u8>) {
        WRITER.send(Msg::Line(self.clone(), line));
    }
}

enum Msg {
    Line(LogFile, Vec<u8>),
    Flush(std::sync::mpsc::Sender<()>),
    Wake,
}

struct Writer {
    tx: SyncSender<Msg>,
    reopen: Arc<AtomicBool>,
}

static WRITER: LazyLock<Writer> = LazyLock::new(|| {
    let (tx, rx) = sync_channel(QUEUE_LINES);
    let reopen = Arc::new(AtomicBool::new(false));
    let flag = reopen.clone();
    // Without the thread every line is counted as dropped (below), rather
    // than a panic on every later request.
    if let Err(e) = std::thread::Builder::new()
        .name("edgeward-logs".into())
        .spawn(move || run(rx, flag))
    {
        log::error!("logs: cannot start the log writer thread, no log line will be written: {e}");
    }
    Writer { tx, reopen }
});

impl Writer {
    fn send(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(Msg::Line(..)) | TrySendError::Disconnected(Msg::Line(..))) => {
                metrics::LOG_DROPPED.inc()
            }
            Err(_) => {}
        }
    }
}

/// Close every log file; each is opened again (by path) with its next line.
/// Called on SIGUSR1 and after every reload: logrotate's `create` (rename,
/// then signal) loses no line, and files of removed sites are closed.
pub(crate) fn reopen() {
    WRITER.reopen.store(true, Ordering::SeqCst);
    WRITER.send(Msg::Wake);
}

/// Wait (at most `timeout`) until every line queued so far is written.
pub(crate) fn flush(timeout: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    // Blocking send: a flush must not be dropped when the queue is full.
    let sent = WRITER.tx.send(Msg::Flush(tx)).is_ok();
    if sent {
        let _ = rx.recv_timeout(timeout);
    }
}

struct Open {
    file: Option<File>,
    buf: Vec<u8>,
    lines: u64,
}

struct State {
    files: HashMap<LogFile, Open>,
    last_report: Mutex<HashMap<PathBuf, Instant>>,
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

impl State {
    /// Close every file (lines waiting in buffers are kept and go to the
    /// file opened again by path).
    fn close_all(&mut self) {
        self.files.retain(|_, o| !o.buf.is_empty());
        for o in self.files.values_mut() {
            o.file = None;
        }
    }

    fn report(&self, path: &Path, what: &str, err: &std::io::Error, lost: u64) {
        metrics::LOG_WRITE_ERRORS.inc();
        metrics::LOG_DROPPED.inc_by(lost);
        let mut last = self.last_report.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = last
            .get(path)
            .is_none_or(|t| now.duration_since(*t) >= REPORT_EVERY);
        if due {
            last.insert(path.to_path_buf(), now);
            warn!(
                "log file {}: cannot {what}: {err}; {lost} line(s) lost; retrying with the next line (repeated at most once a minute)",
                path.display()
            );
        }
    }

    fn write_out(&mut self) {
        let mut failures = Vec::new();
        for (lf, o) in self.files.iter_mut() {
            if o.buf.is_empty() {
                continue;
            }
            if o.file.is_none() {
                match open(lf.path()) {
                    Ok(f) => o.file = Some(f),
                    Err(e) => {
                        failures.push((lf.clone(), "open", e, o.lines));
                        o.buf.clear();
                        o.lines = 0;
                        continue;
                    }
                }
            }
            let f = o.file.as_mut().expect("opened above");
            if let Err(e) = f.write_all(&o.buf) {
                // Drop the handle: the next line opens the file again
                // (space freed, permissions fixed, file recreated).
                o.file = None;
                failures.push((lf.clone(), "write", e, o.lines));
            }
            o.buf.clear();
            o.lines = 0;
        }
        for (lf, what, e, lost) in failures {
            self.report(lf.path(), what, &e, lost);
        }
    }
}

fn run(rx: Receiver<Msg>, reopen: Arc<AtomicBool>) {
    let mut st = State {
        files: HashMap::new(),
        last_report: Mutex::new(HashMap::new()),
    };
    let mut waiting_flush: Vec<std::sync::mpsc::Sender<()>> = Vec::new();
    loop {
        if reopen.swap(false, Ordering::SeqCst) {
            st.close_all();
        }
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Take what is already queued, up to a batch, then write it out.
        let mut batch_bytes = 0;
        let mut drained = true;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(lf, line) => {
                    batch_bytes += line.len();
                    let o = st.files.entry(lf).or_insert_with(|| Open {
                        file: None,
                        buf: Vec::new(),
                        lines: 0,
                    });
                    o.buf.extend_from_slice(&line);
                    o.lines += 1;
                }
                Msg::Flush(done) => waiting_flush.push(done),
                Msg::Wake => {}
            }
            if batch_bytes >= MAX_BATCH_BYTES {
                drained = false;
                break;
            }
            next = rx.try_recv().ok();
        }
        if reopen.swap(false, Ordering::SeqCst) {
            st.close_all();
        }
        st.write_out();
        let flushed = !waiting_flush.is_empty();
        for done in waiting_flush.drain(..) {
            let _ = done.send(());
        }
        if drained && !flushed {
            std::thread::sleep(BATCH_PAUSE);
        }
    }
}
