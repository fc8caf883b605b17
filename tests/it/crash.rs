//! kill -9 of the real binary in the middle of traffic, three times over:
//! every email that got `250` has exactly its SMS in the outbox once the
//! daemon runs again, and no SMS is ever written twice. Reply emails go to
//! an SMTP sink that counts every delivery: each `kill -9` makes at most
//! `replies.concurrency` of them (those in flight) go out again (issue 8).

use crate::common::*;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const ROUNDS: usize = 3;
const SENDERS: usize = 6;
/// `replies.concurrency` here: below the default, so that the bound on
/// repeated replies is tight.
const REPLY_CONCURRENCY: usize = 4;

/// A port nobody listens on right now (the binary needs a fixed one).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Writes the test configuration with SMTP on `port` and replies to
/// `replies` (an SMTP URL); fsync on, as in production.
fn write_config(dir: &Path, port: u16, replies: &str) -> PathBuf {
    let toml = test_toml(dir)
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace("fsync = false", "fsync = true")
        .replace(
            &format!("transport = \"file://{}/replies\"", dir.display()),
            &format!("transport = \"{replies}\"\nconcurrency = {REPLY_CONCURRENCY}"),
        );
    assert!(toml.contains(replies), "the reply transport is set");
    let path = dir.join("mail2sms.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

/// Starts `mail2sms serve` with stderr appended to `log`.
fn serve(config: &Path, log: &Path) -> Child {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_mail2sms"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mail2sms")
}

/// Starts the daemon on a fresh port and waits until it greets with `220`
/// (the listener is bound before the store is open, so a bare connect
/// proves little). Another port is tried if this one was taken meanwhile.
async fn start_daemon(dir: &Path, log: &Path, replies: &str) -> (Child, u16) {
    for _ in 0..3 {
        let port = free_port();
        let config = write_config(dir, port, replies);
        let mut child = serve(&config, log);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if greets(port).await {
                return (child, port);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let tail = log_tail(log);
                assert!(
                    tail.contains("smtp.listen"),
                    "mail2sms exited with {status} before listening:\n{tail}"
                );
                break; // The port was taken: try another one.
            }
            assert!(
                Instant::now() < deadline,
                "mail2sms never greeted on {port}:\n{}",
                log_tail(log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("mail2sms could not listen:\n{}", log_tail(log));
}

/// Whether an SMTP server on `port` sends its `220` greeting within 5 s.
async fn greets(port: u16) -> bool {
    use tokio::io::AsyncReadExt;
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut buf = [0u8; 3];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"220"
    )
}

/// The last lines the daemons logged, for failure messages.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The numbers (as the outbox writes them) email `n` is sent to: one or two.
fn recipients(n: usize) -> Vec<String> {
    (0..1 + n % 2)
        .map(|j| format!("+33612{:06}", n * 2 + j))
        .collect()
}

fn email_id(n: usize) -> String {
    format!("crash-{n}")
}

/// Email `n`: its numbers written nationally, as a customer would.
fn email(n: usize) -> Vec<u8> {
    let nums: Vec<String> = recipients(n)
        .iter()
        .map(|e164| e164.replace("+33", "0"))
        .collect();
    let nums: Vec<&str> = nums.iter().map(String::as_str).collect();
    plain_email(
        "ops@masociete.com",
        &envoi_multi(&nums, &format!("sms {n}"), &email_id(n)),
    )
}

/// What the test knows about each email it sent.
#[derive(Default)]
struct Ledger {
    /// Emails answered `250`.
    accepted: HashSet<usize>,
    /// Emails with no answer or another answer (the daemon was killed).
    unanswered: HashSet<usize>,
}

/// Sends distinct emails on `SENDERS` connections until `stop` is set.
async fn traffic(
    port: u16,
    next: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (next, stop, ledger) = (next.clone(), stop.clone(), ledger.clone());
        tasks.spawn(async move {
            let client = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(port)
                .timeout(Some(Duration::from_secs(10)))
                .build();
            let envelope = Envelope::new(
                Some("ops@masociete.com".parse().expect("from")),
                vec!["sms@sms.example.com".parse().expect("to")],
            )
            .expect("envelope");
            while !stop.load(Ordering::SeqCst) {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let result = client.send_raw(&envelope, &email(n)).await;
                let ok = matches!(&result, Ok(r) if r.code().to_string() == "250");
                {
                    let mut ledger = ledger.lock().expect("ledger");
                    if ok {
                        ledger.accepted.insert(n);
                    } else {
                        ledger.unanswered.insert(n);
                    }
                }
                if !ok {
                    // The daemon is gone: do not spin until `stop`.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    tasks.join_all().await;
}

/// The outbox, checked line by line: whole, JSON, never repeated.
fn checked_outbox(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the outbox ends with a partial line"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad outbox line {l:?}: {e}")))
        .collect()
}

/// The numbers written for each emailId.
fn by_email(lines: &[serde_json::Value]) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for line in lines {
        map.entry(line["email_id"].as_str().expect("email_id").to_string())
            .or_default()
            .push(line["to"].as_str().expect("to").to_string());
    }
    for numbers in map.values_mut() {
        numbers.sort();
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::too_many_lines,
    reason = "one crash scenario, told in the order it happens"
)]
async fn kill_9_mid_traffic_loses_no_accepted_email_and_repeats_no_sms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr.log");
    let outbox = dir.path().join("outbox.jsonl");
    let next = Arc::new(AtomicUsize::new(0));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let sink = ReplySink::start().await;
    // A real relay takes a moment per message.
    sink.set_max_delay_ms(20);

    for round in 0..ROUNDS {
        sink.set_round(round);
        // A new port each round: nothing depends on the old socket's state.
        let (mut child, port) = start_daemon(dir.path(), &log, &sink.transport()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let sender = tokio::spawn(traffic(port, next.clone(), stop.clone(), ledger.clone()));
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..=600))).await;
        child.kill().await.expect("kill -9");
        stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(60), sender)
            .await
            .expect("senders stop once the daemon is dead")
            .expect("senders do not panic");
        let ledger = ledger.lock().expect("ledger");
        eprintln!(
            "round {round}: {} accepted, {} unanswered, {} outbox lines, {} replies delivered so far",
            ledger.accepted.len(),
            ledger.unanswered.len(),
            checked_outbox(&outbox).len(),
            sink.deliveries().len()
        );
    }

    assert!(
        !ledger.lock().expect("ledger").accepted.is_empty(),
        "no email was accepted at all:\n{}",
        log_tail(&log)
    );

    // Once more, without a kill: everything accepted must go out, and new
    // mail is still taken.
    sink.set_round(ROUNDS);
    let (mut child, port) = start_daemon(dir.path(), &log, &sink.transport()).await;
    let probe = next.fetch_add(1, Ordering::SeqCst);
    // By the time its answer is in, the daemon has long finished starting
    // (and handles SIGTERM).
    {
        let client = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let envelope = Envelope::new(
            Some("ops@masociete.com".parse().expect("from")),
            vec!["sms@sms.example.com".parse().expect("to")],
        )
        .expect("envelope");
        let response = client
            .send_raw(&envelope, &email(probe))
            .await
            .expect("the restarted daemon takes mail");
        assert_eq!(response.code().to_string(), "250");
    }
    ledger.lock().expect("ledger").accepted.insert(probe);
    let accepted: BTreeMap<String, Vec<String>> = {
        let ledger = ledger.lock().expect("ledger");
        ledger
            .accepted
            .iter()
            .map(|&n| (email_id(n), recipients(n)))
            .collect()
    };
    let all_out = || {
        let sent = by_email(&checked_outbox(&outbox));
        accepted
            .iter()
            .all(|(id, numbers)| sent.get(id).is_some_and(|s| s.len() >= numbers.len()))
            .then_some(())
    };
    // Every accepted email gets its etatAck and, once its SMS are out,
    // its etatNot.
    let all_replied = || {
        let subjects: HashSet<String> = sink.deliveries().into_iter().map(|d| d.subject).collect();
        accepted
            .keys()
            .all(|id| {
                subjects.contains(&format!("etatAck {id}"))
                    && subjects.contains(&format!("etatNot {id}"))
            })
            .then_some(())
    };
    // Up to 45 s: a loaded machine may take a while to catch up.
    let mut done = None;
    for _ in 0..3 {
        done = wait_until(|| all_out().and_then(|()| all_replied())).await;
        if done.is_some() {
            break;
        }
    }
    // Stop it the normal way (SIGTERM) before judging the outbox.
    let pid = child.id().expect("pid").to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("mail2sms stops within 30 s of SIGTERM")
        .expect("wait");
    let log_text = log_tail(&log);
    assert!(status.success(), "{status}:\n{log_text}");
    assert!(
        done.is_some(),
        "some accepted emails never got their SMS or replies:\n{log_text}"
    );

    // Replies: a Message-ID delivered again in round r was in flight when
    // round r-1 was killed; never more than replies.concurrency per crash.
    let deliveries = sink.deliveries();
    let repeats = repeats_per_round(&deliveries, ROUNDS + 1);
    eprintln!(
        "{} reply deliveries; repeated after each kill -9: {:?} (bound {REPLY_CONCURRENCY})",
        deliveries.len(),
        &repeats[1..]
    );
    assert_eq!(repeats[0], 0, "no repeat before the first crash");
    for (crash, &n) in repeats[1..].iter().enumerate() {
        assert!(
            n <= REPLY_CONCURRENCY,
            "kill -9 number {} made {n} replies go out again (at most {REPLY_CONCURRENCY} in flight)",
            crash + 1
        );
    }

    let lines = checked_outbox(&outbox);
    let jobs: HashSet<i64> = lines
        .iter()
        .map(|l| l["job"].as_i64().expect("job"))
        .collect();
    assert_eq!(jobs.len(), lines.len(), "a job was written twice");
    let pairs: HashSet<(String, String)> = lines
        .iter()
        .map(|l| (l["email_id"].to_string(), l["to"].to_string()))
        .collect();
    assert_eq!(pairs.len(), lines.len(), "an SMS was written twice");

    let sent = by_email(&lines);
    for (id, numbers) in &accepted {
        assert_eq!(sent.get(id), Some(numbers), "SMS of accepted email {id}");
    }
    // Emails killed before their answer may or may not be there, but only
    // with their own numbers.
    let ledger = ledger.lock().expect("ledger");
    for (id, numbers) in &sent {
        let n: usize = id["crash-".len()..].parse().expect("an emailId we sent");
        assert!(
            ledger.accepted.contains(&n) || ledger.unanswered.contains(&n),
            "{id} was never sent"
        );
        assert_eq!(numbers, &recipients(n), "{id}");
        let line = lines.iter().find(|l| l["email_id"] == *id).expect("line");
        assert_eq!(line["text"], format!("sms {n}"));
    }
    let full_log = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!(
        "{} accepted emails, {} outbox lines, {} from unanswered emails; \
         interrupted sends settled at {} restarts, partial lines removed {} times",
        accepted.len(),
        lines.len(),
        sent.len() - accepted.len(),
        full_log
            .matches("settling SMS whose send was interrupted")
            .count(),
        full_log.matches("removing a partial last line").count()
    );
}
