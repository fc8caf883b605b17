//! The outbox tailer: when each SMS reaches the `outbox` provider's JSONL file.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Outbox polling interval.
const TAIL_POLL: Duration = Duration::from_millis(2);
/// Keys every outbox line is expected to carry.
const OUTBOX_KEYS: [&str; 6] = ["to", "text", "email_id", "account", "sender_id", "tracker"];

/// What the tailer saw in the outbox.
#[derive(Default)]
pub(crate) struct TailState {
    /// First time each email_id was seen in the outbox.
    pub(crate) seen: HashMap<String, Instant>,
    /// Non-blank lines read, valid or not.
    lines: u64,
    /// Lines that are not JSON objects: a format bug or a torn line.
    pub(crate) invalid_json: u64,
    /// Lines whose email_id was already seen: an SMS sent twice.
    pub(crate) duplicates: u64,
    /// Lines lacking a key from `OUTBOX_KEYS`, by key.
    pub(crate) missing_keys: BTreeMap<&'static str, u64>,
    /// First invalid line, for the report.
    pub(crate) first_invalid: Option<String>,
    /// Failed reads of the outbox (the tailer retries on its next poll).
    read_errors: u64,
}

impl TailState {
    /// Counts one line, seen at `now`.
    fn ingest(&mut self, line: &[u8], now: Instant) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.lines += 1;
        let v: Value = match serde_json::from_slice(line) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                self.invalid_json += 1;
                if self.first_invalid.is_none() {
                    let s = String::from_utf8_lossy(line);
                    self.first_invalid = Some(s.chars().take(200).collect());
                }
                return;
            }
        };
        for k in OUTBOX_KEYS {
            if v.get(k).is_none() {
                *self.missing_keys.entry(k).or_default() += 1;
            }
        }
        let id = match (v.get("email_id"), v.get("text")) {
            (Some(Value::String(s)), _) if !s.is_empty() => s.clone(),
            (Some(Value::Number(n)), _) => n.to_string(),
            // An alert: its text starts with the subject naming it.
            (_, Some(Value::String(text))) => {
                match text.strip_prefix(crate::message::ALERT_SUBJECT) {
                    Some(rest) => rest
                        .split(['\n', ' '])
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                    None => return,
                }
            }
            _ => return,
        };
        match self.seen.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => self.duplicates += 1,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(now);
            }
        }
    }
}

/// A thread following the outbox file while the run sends.
pub(crate) struct Tailer {
    /// What was seen so far, shared with the thread.
    state: Arc<Mutex<TailState>>,
    /// Set on drop: the thread reads what is left, then ends.
    stop: Arc<AtomicBool>,
    /// The thread, joined on drop.
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Tailer {
    /// Start tailing `path`. If it already exists, only lines appended from now on count.
    pub(crate) fn start(path: PathBuf) -> Tailer {
        let state = Arc::new(Mutex::new(TailState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (state.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("outbox-tail".into())
            .spawn(move || tail_loop(&path, &s2, &st2))
            .expect("spawn tailer thread");
        Tailer {
            state,
            stop,
            handle: Some(handle),
        }
    }

    /// What was seen so far.
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, TailState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Tailer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The outbox file being followed.
struct OpenFile {
    /// The open file, read from `pos` on.
    file: File,
    /// Its inode: another inode at the path means the file was replaced.
    ino: u64,
    /// How far it was read: a shorter file was truncated in place.
    pos: u64,
}

/// Opens the outbox, at its end when `at_end` (lines already there are not
/// this run's).
fn open_tail(path: &Path, at_end: bool, skip_partial: &mut bool) -> Option<OpenFile> {
    let mut file = File::open(path).ok()?;
    let md = file.metadata().ok()?;
    let mut pos = 0;
    if at_end && md.len() > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(md.len() - 1)).ok()?;
        file.read_exact(&mut last).ok()?;
        pos = md.len();
        // If a line is being written right now, its rest is not ours to count.
        *skip_partial = last[0] != b'\n';
    }
    file.seek(SeekFrom::Start(pos)).ok()?;
    Some(OpenFile {
        file,
        ino: md.ino(),
        pos,
    })
}

/// The tailer thread: polls the file, follows truncation and rotation.
fn tail_loop(path: &Path, state: &Mutex<TailState>, stop: &AtomicBool) {
    let mut skip_partial = false;
    let mut cur = open_tail(path, true, &mut skip_partial);
    let mut pending: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk: Vec<u8> = Vec::with_capacity(1 << 16);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if cur.is_none() {
            cur = open_tail(path, false, &mut skip_partial);
        }
        if let Some(f) = cur.as_mut() {
            // Truncated in place: start over.
            if let Ok(md) = f.file.metadata()
                && md.len() < f.pos
            {
                let _ = f.file.seek(SeekFrom::Start(0));
                f.pos = 0;
                pending.clear();
            }
            chunk.clear();
            match f.file.read_to_end(&mut chunk) {
                Ok(n) => f.pos += n as u64,
                Err(_) => state.lock().unwrap_or_else(|e| e.into_inner()).read_errors += 1,
            }
            if !chunk.is_empty() {
                let now = Instant::now();
                pending.extend_from_slice(&chunk);
                if let Some(last_nl) = pending.iter().rposition(|&b| b == b'\n') {
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    for line in pending[..last_nl].split(|&b| b == b'\n') {
                        if skip_partial {
                            skip_partial = false;
                            continue;
                        }
                        st.ingest(line, now);
                    }
                    drop(st);
                    pending.drain(..=last_nl);
                }
            }
            // Replaced by another file (rotation): finish this one, then reopen.
            match std::fs::metadata(path) {
                Ok(md) if md.ino() != f.ino => {
                    cur = None;
                    pending.clear();
                    continue;
                }
                _ => {}
            }
        }
        if stopping {
            break;
        }
        std::thread::sleep(TAIL_POLL);
    }
}

/// Wait until every id in `ids` was seen or `deadline` passes; returns how many are missing.
pub(crate) async fn wait_drain(tail: &Tailer, ids: &[&str], deadline: Instant) -> usize {
    let mut pending: Vec<&str> = ids.to_vec();
    let mut last_report = Instant::now();
    loop {
        {
            let st = tail.lock();
            pending.retain(|id| !st.seen.contains_key(*id));
        }
        if pending.is_empty() || Instant::now() >= deadline {
            return pending.len();
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            eprintln!(
                "  [drain] {}/{} SMS seen in outbox",
                ids.len() - pending.len(),
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_ingest() {
        let mut t = TailState::default();
        let now = Instant::now();
        t.ingest(br#"{"to":"+33600000001","text":"x","email_id":"1-1","account":"a","sender_id":null,"tracker":null}"#, now);
        t.ingest(br#"{"email_id":17}"#, now);
        t.ingest(br#"{"email_id":"1-1"}"#, now);
        t.ingest(b"garbage", now);
        t.ingest(b"  ", now);
        assert_eq!(t.lines, 4);
        assert_eq!(t.invalid_json, 1);
        assert_eq!(t.duplicates, 1);
        assert!(t.seen.contains_key("1-1") && t.seen.contains_key("17"));
        assert_eq!(t.missing_keys.get("to"), Some(&2));
        t.ingest(br#"{"to":"+33600000001","text":"mail2sms load 1-2\nHost: db1","email_id":null,"account":"a","sender_id":null,"tracker":null}"#, now);
        assert!(
            t.seen.contains_key("1-2"),
            "an alert is found by its subject"
        );
    }
}
