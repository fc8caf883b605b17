//! Records: one line per message (`--record`, `--resend`, `--records`).

use std::fs::File;
use std::path::Path;
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result, anyhow};

use crate::client::{Outcome, Status};

/// One line of a `--record` file: what one message got.
#[derive(Debug, PartialEq)]
pub(crate) struct Record {
    /// The emailId sent: the key every check is made on.
    pub(crate) email_id: String,
    /// The message's index (it picks the phone number), so that `--resend`
    /// sends the very same message again.
    pub(crate) idx: usize,
    /// What the daemon answered: `250`, `250-dup` ("already processed"),
    /// another end-of-DATA code, `refused:STAGE:CODE` or `error:STAGE`.
    pub(crate) result: String,
    /// When the answer came, in Unix milliseconds (0: no answer).
    pub(crate) at_ms: u64,
}

impl Record {
    /// What `o` got, as a record line says it.
    fn of(o: &Outcome) -> Record {
        let (result, at_ms) = match &o.status {
            Status::Done {
                code,
                duplicate,
                reply_wall,
                ..
            } => {
                let ms = reply_wall
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let result = if *duplicate {
                    "250-dup".to_string()
                } else {
                    code.to_string()
                };
                (result, ms)
            }
            Status::Refused { stage, code } => (format!("refused:{stage}:{code}"), 0),
            Status::Failed { stage, .. } => (format!("error:{stage}"), 0),
        };
        Record {
            email_id: o.email_id.clone(),
            idx: o.idx,
            result,
            at_ms,
        }
    }

    /// A `250` that queued the request (not "already processed").
    pub(crate) fn queued(&self) -> bool {
        self.result == "250"
    }

    /// Any `250`: the daemon says the request is in its store.
    pub(crate) fn accepted(&self) -> bool {
        self.result == "250" || self.result == "250-dup"
    }
}

/// Writes the `--record` file: one line per outcome.
pub(crate) fn write_records(path: &Path, outcomes: &[Outcome]) -> Result<()> {
    use std::io::Write;
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for o in outcomes {
        let r = Record::of(o);
        writeln!(w, "{}\t{}\t{}\t{}", r.email_id, r.idx, r.result, r.at_ms)
            .with_context(|| format!("write {}", path.display()))?;
    }
    w.flush()
        .with_context(|| format!("write {}", path.display()))
}

/// Reads a `--record` file.
pub(crate) fn read_records(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            let bad = || {
                anyhow!(
                    "{}:{}: not a --record line: {line:?}",
                    path.display(),
                    n + 1
                )
            };
            let f: Vec<&str> = line.split('\t').collect();
            let [email_id, idx, result, at_ms] = f[..] else {
                return Err(bad());
            };
            Ok(Record {
                email_id: email_id.to_string(),
                idx: idx.parse().map_err(|_| bad())?,
                result: result.to_string(),
                at_ms: at_ms.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn records_round_trip() {
        let now = Instant::now();
        let done = |code, duplicate| Status::Done {
            code,
            duplicate,
            data_end: now,
            reply_at: now,
            reply_wall: UNIX_EPOCH + Duration::from_millis(1_234),
        };
        let statuses = vec![
            done(250, false),
            done(250, true),
            done(451, false),
            Status::Refused {
                stage: "rcpt",
                code: 550,
            },
            Status::Failed {
                stage: "connect",
                what: "refused".into(),
            },
        ];
        let expected = [
            ("250", 1_234),
            ("250-dup", 1_234),
            ("451", 1_234),
            ("refused:rcpt:550", 0),
            ("error:connect", 0),
        ];
        let outcomes: Vec<Outcome> = statuses
            .into_iter()
            .enumerate()
            .map(|(idx, status)| Outcome {
                idx,
                email_id: format!("9-{idx}"),
                status,
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("load-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("answers.tsv");
        write_records(&path, &outcomes).unwrap();
        let back = read_records(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.len(), outcomes.len());
        for (idx, (r, (result, ms))) in back.iter().zip(expected).enumerate() {
            assert_eq!(
                (r.email_id.as_str(), r.idx),
                (format!("9-{idx}").as_str(), idx)
            );
            assert_eq!((r.result.as_str(), r.at_ms), (result, ms));
        }
        assert!(back[0].queued() && back[0].accepted());
        assert!(!back[1].queued() && back[1].accepted());
        assert!(!back[2].accepted());
    }
}
