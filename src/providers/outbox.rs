//! The `outbox` provider: appends each SMS as one JSON object per line to a
//! local file. It is the embedded default, the stand-in for a real provider
//! in tests and benchmarks, and a simple integration point (a script can tail
//! the file).
//!
//! Exactly once across crashes: the dispatcher marks a job as being sent in
//! the store before calling [`Outbox::send`], and marks it sent after. After a
//! crash between the two, [`Outbox::reconcile`] looks for the job's line: if it
//! is there the job is sent, otherwise it is queued again. A line cut short by
//! a crash mid-write is removed when the file is opened, so it never counts.

use super::ProviderError;
use super::settings::ProviderSettings;
use super::{OutgoingSms, Provider, Reconciled, SendError};
use crate::clock::Clock;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// `type = "outbox"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// The JSON-lines file SMS are appended to (its directory is created).
    pub path: PathBuf,
    /// fsync after each batch, so a power cut loses no line the store
    /// already counts as sent. On by default.
    #[serde(default = "default_true")]
    pub fsync: bool,
    /// The most batches per second written (none: no limit), like the
    /// HTTP providers' `rate_limit`; handy to rehearse a throttled provider.
    #[serde(default)]
    pub rate_limit: Option<std::num::NonZeroU32>,
}

fn default_true() -> bool {
    true
}

impl ProviderSettings for OutboxConfig {
    fn describe(&self) -> String {
        format!("outbox → {}", self.path.display())
    }

    fn rate_limit(&self) -> Option<std::num::NonZeroU32> {
        self.rate_limit
    }

    /// The outbox writes one batch at a time, so its limit is per batch.
    fn batch_rate_limit(&self) -> Option<std::num::NonZeroU32> {
        self.rate_limit
    }

    fn validate(&self) -> Result<(), (String, String)> {
        Ok(())
    }

    fn build(&self, name: &str, clock: &Clock) -> Result<Arc<dyn super::Provider>, ProviderError> {
        let outbox = Outbox::open(self).map_err(|source| ProviderError::Outbox {
            name: name.to_owned(),
            source,
        })?;
        Ok(Arc::new(outbox.with_clock(clock.clone())))
    }
}

/// One line of the outbox file: the SMS as handed to the provider, and
/// when it was written.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct OutboxLine {
    /// The SMS (`ref` first, for fast scans; then `job`, `to`, `text`,
    /// `sender_id`, `account`, `email_id`, `tracker`).
    #[serde(flatten)]
    pub sms: OutgoingSms,
    /// When it was written, in Unix milliseconds.
    pub at_ms: i64,
}

/// The outbox provider.
pub struct Outbox {
    /// Where lines go (for messages).
    path: PathBuf,
    /// The open file; one writer at a time keeps lines whole.
    file: Arc<Mutex<OutboxFile>>,
    /// Whether to fsync after each batch.
    fsync: bool,
    /// Stamps each line's `at_ms`: the daemon's clock, settable by tests.
    clock: Clock,
}

/// The open file and what a failed write left behind.
struct OutboxFile {
    /// Opened for appending.
    file: File,
    /// The length to cut the file back to before anything else is written:
    /// set when a write or fsync failed and the cut could not be done then.
    /// Lines past it were never reported sent, and will be written again.
    cut_to: Option<u64>,
}

impl Outbox {
    /// Opens the file for appending, creating it, and drops a partial last
    /// line left by a crash mid-write.
    pub fn open(config: &OutboxConfig) -> std::io::Result<Outbox> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&config.path)?;
        repair(&mut file)?;
        Ok(Outbox {
            path: config.path.clone(),
            file: Arc::new(Mutex::new(OutboxFile { file, cut_to: None })),
            fsync: config.fsync,
            clock: Clock::default(),
        })
    }

    /// The same outbox, stamping lines with `clock`'s time.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}

/// Truncates the file after its last complete line.
fn repair(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + pos as u64 + 1;
            break;
        }
        end = start;
    }
    if end != len {
        tracing::warn!(
            dropped_bytes = len - end,
            "outbox: removing a partial last line"
        );
        file.set_len(end)?;
        file.sync_data()?;
    }
    Ok(())
}

impl OutboxFile {
    /// Appends a whole batch, or nothing: if the write or its fsync fails,
    /// the file is cut back to where it was, so that none of the batch's
    /// lines stays behind to be written a second time on retry.
    fn append(&mut self, bytes: &[u8], fsync: bool) -> std::io::Result<()> {
        if let Some(len) = self.cut_to {
            self.file.set_len(len)?;
            self.file.sync_data()?;
            self.cut_to = None;
        }
        let start = self.file.metadata()?.len();
        let written = self
            .file
            .write_all(bytes)
            .and_then(|()| if fsync { self.file.sync_data() } else { Ok(()) });
        if written.is_err() {
            self.cut_to = Some(start);
            if self
                .file
                .set_len(start)
                .and_then(|()| self.file.sync_data())
                .is_ok()
            {
                self.cut_to = None;
            }
        }
        written
    }
}

#[async_trait]
impl Provider for Outbox {
    fn max_batch(&self) -> usize {
        1000
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        let at_ms = self.clock.now().as_millisecond();
        let mut bytes = Vec::with_capacity(batch.len() * 200);
        for sms in batch {
            let line = OutboxLine {
                sms: sms.clone(),
                at_ms,
            };
            if serde_json::to_writer(&mut bytes, &line).is_ok() {
                bytes.push(b'\n');
            }
        }
        let file = self.file.clone();
        let fsync = self.fsync;
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            file.lock()
                .map_err(|_| std::io::Error::other("outbox lock poisoned"))?
                .append(&bytes, fsync)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match written {
            Ok(()) => batch.iter().map(|sms| Ok(sms.reference.clone())).collect(),
            Err(e) => {
                let error = SendError::transient(format!("outbox {}: {e}", self.path.display()));
                vec![Err(error); batch.len()]
            }
        }
    }

    async fn reconcile(&self, batch: &[OutgoingSms]) -> Vec<Reconciled> {
        let wanted: HashSet<String> = batch.iter().map(|s| s.reference.clone()).collect();
        let path = self.path.clone();
        let found = tokio::task::spawn_blocking(move || -> std::io::Result<HashSet<String>> {
            #[derive(Deserialize)]
            struct RefOnly {
                #[serde(rename = "ref")]
                reference: String,
            }
            let mut found = HashSet::new();
            for line in BufReader::new(File::open(&path)?).lines() {
                if let Ok(l) = serde_json::from_str::<RefOnly>(&line?)
                    && wanted.contains(&l.reference)
                {
                    found.insert(l.reference);
                }
            }
            Ok(found)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match found {
            Ok(found) => batch
                .iter()
                .map(|s| {
                    if found.contains(&s.reference) {
                        Reconciled::Sent(s.reference.clone())
                    } else {
                        Reconciled::NotSent
                    }
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot read the file to reconcile");
                vec![Reconciled::Unknown; batch.len()]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(job_id: i64) -> OutgoingSms {
        crate::providers::test_sms(
            format!("abcd1234-{job_id}"),
            job_id,
            "+33601020304",
            "L'été \"chaud\"\nligne 2",
        )
        .with_sender(Some("MaSociete"))
    }

    fn config(dir: &tempfile::TempDir) -> OutboxConfig {
        OutboxConfig {
            path: dir.path().join("sub/outbox.jsonl"),
            fsync: true,
            rate_limit: None,
        }
    }

    #[tokio::test]
    async fn lines_are_stamped_with_the_outboxs_clock() {
        let dir = tempfile::tempdir().unwrap();
        let at = jiff::Timestamp::from_millisecond(1_750_000_000_000).unwrap();
        let outbox = Outbox::open(&config(&dir))
            .unwrap()
            .with_clock(Clock::manual(at));
        assert!(outbox.send(&[sms(1)]).await[0].is_ok());
        let text = std::fs::read_to_string(dir.path().join("sub/outbox.jsonl")).unwrap();
        let line: OutboxLine = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line.at_ms, 1_750_000_000_000);
    }

    #[tokio::test]
    async fn appends_one_json_line_per_sms() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&config(&dir)).unwrap();
        let refs = outbox.send(&[sms(1), sms(2)]).await;
        assert_eq!(refs, vec![Ok("abcd1234-1".into()), Ok("abcd1234-2".into())]);
        let text = std::fs::read_to_string(dir.path().join("sub/outbox.jsonl")).unwrap();
        let lines: Vec<OutboxLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].sms, sms(2));
        assert_eq!(lines[0].sms, sms(1));
        assert!(text.starts_with("{\"ref\":\"abcd1234-1\",\"job\":1,"));
    }

    #[tokio::test]
    async fn partial_last_line_is_dropped_on_open_and_reconcile_sees_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/outbox.jsonl");
        {
            let outbox = Outbox::open(&config(&dir)).unwrap();
            let _ = outbox.send(&[sms(7)]).await;
        }
        // A crash in the middle of writing job 8's line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"ref\":\"abcd1234-8\",\"job\":8,\"to\":\"+336")
            .unwrap();
        drop(f);
        let outbox = Outbox::open(&config(&dir)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.ends_with('\n'));
        let states = outbox.reconcile(&[sms(7), sms(8)]).await;
        assert_eq!(
            states,
            vec![Reconciled::Sent("abcd1234-7".into()), Reconciled::NotSent]
        );
    }

    #[tokio::test]
    async fn same_job_number_from_another_database_is_not_taken_as_sent() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(&config(&dir)).unwrap();
        let _ = outbox.send(&[sms(7)]).await;
        let mut other = sms(7);
        other.reference = "ffff0000-7".into();
        assert_eq!(outbox.reconcile(&[other]).await, vec![Reconciled::NotSent]);
    }

    #[test]
    fn a_failed_batch_leaves_none_of_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.jsonl");
        std::fs::write(&path, b"{\"ref\":\"a-1\"}\n").unwrap();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut outbox = OutboxFile { file, cut_to: None };
        // A failure after part of the batch reached the file (as a full disk
        // does): simulated by a read-only handle on which writing fails after
        // we appended part of the batch by hand.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"ref\":\"a-2\"}\n")
            .unwrap();
        outbox.cut_to = Some("{\"ref\":\"a-1\"}\n".len() as u64);
        outbox.append(b"{\"ref\":\"a-3\"}\n", true).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"ref\":\"a-1\"}\n{\"ref\":\"a-3\"}\n"
        );
        // A write that fails outright (the handle is read-only) leaves the
        // file as it was and remembers nothing to cut.
        let ro = OpenOptions::new().read(true).open(&path).unwrap();
        let mut broken = OutboxFile {
            file: ro,
            cut_to: None,
        };
        assert!(broken.append(b"{\"ref\":\"a-4\"}\n", true).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }

    #[test]
    fn repair_of_a_file_without_any_newline_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.jsonl");
        std::fs::write(&path, vec![b'x'; 10_000]).unwrap();
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        repair(&mut f).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
