//! mail2sms behind a real Postfix (a private instance per test, see
//! `postfix_instance.rs`), configured from `examples/postfix/` in both
//! modes: relay over SMTP (`transport.smtp`) and the pipe transport
//! running `mail2sms deliver` (`transport.pipe`, `master.cf`). Skipped,
//! saying so, where Postfix is not installed (`.ci/run` installs it).

use crate::common::*;
use crate::postfix_instance::{
    Postfix, Setup, example, free_port, open_up, replace, skip_without_postfix, user_ids,
};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mail2sms::config::Config;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The unprivileged user of the pipe transport in the tests (master.cf's
/// `user=`; `mail2sms` in the example).
const PIPE_USER: &str = "nobody";

/// A test's directory: Postfix's and mail2sms's files, reachable by the
/// `postfix` user and the pipe's user.
fn test_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    open_up(root.path());
    root
}

/// mail2sms's side, from `examples/postfix/mail2sms.toml`: its files under
/// `ROOT/state` (the example's `/var/lib/mail2sms`).
struct Mail2sms {
    /// The configuration file (the pipe's `--config`).
    config: PathBuf,
    /// The state directory: store, outbox, replies.
    state: PathBuf,
}

impl Mail2sms {
    /// Writes the example's configuration with SMTP on `listen` and
    /// `smtp.unauthorized = "{unauthorized}"`.
    fn write(root: &Path, listen: &str, unauthorized: &str) -> Mail2sms {
        let state = root.join("state");
        std::fs::create_dir_all(&state).expect("state directory");
        open_up(&state);
        let toml = example("mail2sms.toml");
        let toml = replace(&toml, "/var/lib/mail2sms", &state.display().to_string());
        let toml = replace(&toml, "\"127.0.0.1:2525\"", &format!("\"{listen}\""));
        let toml = replace(
            &toml,
            "transport = \"smtp://127.0.0.1:25\"",
            &format!("transport = \"file://{}/replies\"", state.display()),
        );
        let toml = replace(
            &toml,
            "unauthorized = \"discard\"",
            &format!("unauthorized = \"{unauthorized}\""),
        );
        let toml = format!("{toml}\n[dispatch]\npoll_interval_ms = 50\n");
        let config = root.join("mail2sms.toml");
        std::fs::write(&config, toml).expect("write mail2sms.toml");
        Mail2sms { config, state }
    }

    /// Gives the state directory to the pipe's user, as the fixed-user
    /// unit's `StateDirectory=` does for `User=mail2sms`.
    fn give_state_to_pipe_user(&self) {
        let (uid, gid) = user_ids(PIPE_USER);
        std::os::unix::fs::chown(&self.state, Some(uid), Some(gid)).expect("chown state");
    }

    /// Starts the daemon (in this process) on the configuration.
    async fn start(&self) -> TestApp {
        let config = Config::load(&self.config).expect("the example configuration loads");
        TestApp::start_in(tempfile::tempdir().expect("tempdir"), config).await
    }

    /// The SMS "sent" so far.
    fn outbox(&self) -> Vec<serde_json::Value> {
        read_outbox(&self.state.join("outbox.jsonl"))
    }

    /// Waits until exactly `n` SMS were sent and no more come within a
    /// second, and returns them.
    async fn exactly(&self, n: usize) -> Vec<serde_json::Value> {
        wait_until(|| (self.outbox().len() >= n).then_some(()))
            .await
            .unwrap_or_else(|| panic!("never {n} SMS: {:?}", self.outbox()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lines = self.outbox();
        assert_eq!(lines.len(), n, "{lines:?}");
        lines
    }
}

/// Postfix relaying the SMS domain to mail2sms on `port` over SMTP
/// (`examples/postfix/transport.smtp`), plus `more` transport lines.
fn relay(port: u16, more: &str) -> Setup {
    let transport = replace(
        &example("transport.smtp"),
        "[127.0.0.1]:2525",
        &format!("[127.0.0.1]:{port}"),
    );
    Setup {
        transport: format!("{transport}{more}"),
        master_cf: String::new(),
        main_cf: String::new(),
    }
}

/// Postfix piping the SMS domain into this build's `mail2sms deliver`
/// (`examples/postfix/transport.pipe` and `master.cf`), plus `more`
/// transport lines.
fn pipe(mail2sms: &Mail2sms, more: &str) -> Setup {
    let master = example("master.cf");
    let master = replace(&master, "user=mail2sms", &format!("user={PIPE_USER}"));
    let master = replace(
        &master,
        "/usr/local/bin/mail2sms",
        env!("CARGO_BIN_EXE_mail2sms"),
    );
    let master = replace(
        &master,
        "/etc/mail2sms/mail2sms.toml",
        &mail2sms.config.display().to_string(),
    );
    Setup {
        transport: format!("{}{more}", example("transport.pipe")),
        master_cf: master,
        main_cf: String::new(),
    }
}

/// An `<envoi>` email from an allowed sender, with `keyid`.
fn request(keyid: &str, email_id: &str) -> Vec<u8> {
    let body = envoi("0601020304", "alerte onduleur", email_id).replace(KEYID, keyid);
    plain_email("ops@masociete.com", &body)
}

const SENDER: &str = "ops@masociete.com";
const SMS_ADDRESS: &str = "sms@sms.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_over_smtp_turns_a_request_into_one_sms() {
    skip_without_postfix!();
    let root = test_root();
    let port = free_port();
    let mail2sms = Mail2sms::write(root.path(), &format!("127.0.0.1:{port}"), "reject");
    let mut app = mail2sms.start().await;
    let postfix = Postfix::start(root.path(), &relay(port, ""));

    postfix.sendmail(SENDER, SMS_ADDRESS, &request(KEYID, "pf-relay-1"));
    postfix
        .wait_log(&format!("relay=127.0.0.1[127.0.0.1]:{port}"), 1)
        .await;
    postfix.wait_log("status=sent", 1).await;
    postfix.wait_queue_empty().await;
    let lines = mail2sms.exactly(1).await;
    assert_eq!(lines[0]["to"], "+33601020304", "{lines:?}");
    assert_eq!(lines[0]["text"], "alerte onduleur", "{lines:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipe_transport_turns_a_request_into_one_sms() {
    skip_without_postfix!();
    let root = test_root();
    let mail2sms = Mail2sms::write(root.path(), "127.0.0.1:0", "reject");
    mail2sms.give_state_to_pipe_user();
    let postfix = Postfix::start(root.path(), &pipe(&mail2sms, ""));

    postfix.sendmail(SENDER, SMS_ADDRESS, &request(KEYID, "pf-pipe-1"));
    postfix.wait_log("status=sent", 1).await;
    postfix.wait_queue_empty().await;
    assert!(
        postfix.log().contains("relay=mail2sms"),
        "{}",
        postfix.log()
    );
    // deliver stored the request; the daemon sends it.
    let mut app = mail2sms.start().await;
    let lines = mail2sms.exactly(1).await;
    assert_eq!(lines[0]["to"], "+33601020304", "{lines:?}");
    app.stop().await;
}

/// An alert as a monitoring server sends it: no `<envoi>`, to the group.
fn alert_mail() -> Vec<u8> {
    b"From: Nagios <nagios@monitoring.example.com>\r\nTo: oncall@sms.example.com\r\n\
      Subject: PROBLEM db1/disk is CRITICAL\r\nMessage-ID: <pf-alert-1@monitoring.example.com>\r\n\
      \r\nDISK CRITICAL - free space: / 312 MB (2%)\r\n\r\n-- \r\nNagios\r\n"
        .to_vec()
}

/// The two SMS of [`alert_mail`], one per number of `oncall`.
fn assert_alert_sms(lines: &[serde_json::Value]) {
    let mut to: Vec<&str> = lines.iter().filter_map(|l| l["to"].as_str()).collect();
    to.sort_unstable();
    assert_eq!(to, ["+33601020304", "+33601020305"], "{lines:?}");
    for line in lines {
        assert_eq!(
            line["text"], "PROBLEM db1/disk is CRITICAL\nDISK CRITICAL - free space: / 312 MB (2%)",
            "subject, then the body without its signature: {lines:?}"
        );
    }
}

/// Issue 10's "done when": a monitoring server pointed at
/// `oncall@sms.example.com` through Postfix (relay over SMTP) gets one SMS
/// per number of the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_to_a_group_through_the_relay_reaches_each_number() {
    skip_without_postfix!();
    let root = test_root();
    let port = free_port();
    let mail2sms = Mail2sms::write(root.path(), &format!("127.0.0.1:{port}"), "reject");
    let mut app = mail2sms.start().await;
    let postfix = Postfix::start(root.path(), &relay(port, ""));
    postfix.sendmail(
        "nagios@monitoring.example.com",
        "oncall@sms.example.com",
        &alert_mail(),
    );
    postfix.wait_log("status=sent", 1).await;
    postfix.wait_queue_empty().await;
    assert_alert_sms(&mail2sms.exactly(2).await);
    app.stop().await;
}

/// The same through the pipe transport (`mail2sms deliver`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_to_a_group_through_the_pipe_reaches_each_number() {
    skip_without_postfix!();
    let root = test_root();
    let mail2sms = Mail2sms::write(root.path(), "127.0.0.1:0", "reject");
    mail2sms.give_state_to_pipe_user();
    let postfix = Postfix::start(root.path(), &pipe(&mail2sms, ""));
    postfix.sendmail(
        "nagios@monitoring.example.com",
        "oncall@sms.example.com",
        &alert_mail(),
    );
    postfix.wait_log("status=sent", 1).await;
    postfix.wait_queue_empty().await;
    let mut app = mail2sms.start().await;
    assert_alert_sms(&mail2sms.exactly(2).await);
    app.stop().await;
}

/// Sends a request with an unknown keyid through `postfix` and checks that
/// Postfix's bounce reaches the sender's domain (`sink`) and no SMS is sent.
async fn check_bounce(postfix: &Postfix, sink: &ReplySink, mail2sms: &Mail2sms) {
    postfix.sendmail(
        SENDER,
        SMS_ADDRESS,
        &request("unknownkey0000000000", "pf-bounce"),
    );
    postfix
        .wait("the bounce to reach the sender", |_| {
            !sink.deliveries().is_empty()
        })
        .await;
    let bounce = &sink.deliveries()[0];
    assert_eq!(bounce.to, SENDER, "{bounce:?}");
    assert!(bounce.subject.contains("Undelivered"), "{bounce:?}");
    let log = postfix.log();
    assert!(log.contains("status=bounced"), "{log}");
    assert!(log.contains("5.7."), "{log}");
    postfix.wait_queue_empty().await;
    assert!(mail2sms.outbox().is_empty(), "{:?}", mail2sms.outbox());
}

/// The transport line sending the sender's domain (and so its bounces) to
/// `sink`.
fn to_sink(sink: &ReplySink) -> String {
    format!("masociete.com    smtp:[127.0.0.1]:{}\n", sink.port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_bounces_to_the_sender_over_smtp() {
    skip_without_postfix!();
    let root = test_root();
    let sink = ReplySink::start().await;
    let port = free_port();
    let mail2sms = Mail2sms::write(root.path(), &format!("127.0.0.1:{port}"), "reject");
    let mut app = mail2sms.start().await;
    let postfix = Postfix::start(root.path(), &relay(port, &to_sink(&sink)));
    check_bounce(&postfix, &sink, &mail2sms).await;
    assert!(postfix.log().contains("550 5.7.1"), "{}", postfix.log());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_bounces_to_the_sender_through_the_pipe() {
    skip_without_postfix!();
    let root = test_root();
    let sink = ReplySink::start().await;
    let mail2sms = Mail2sms::write(root.path(), "127.0.0.1:0", "reject");
    mail2sms.give_state_to_pipe_user();
    let postfix = Postfix::start(root.path(), &pipe(&mail2sms, &to_sink(&sink)));
    check_bounce(&postfix, &sink, &mail2sms).await;
    // deliver's 77 (EX_NOPERM) is a permanent failure.
    assert!(postfix.log().contains("5.7.0"), "{}", postfix.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_in_the_queue_while_mail2sms_is_down_then_one_sms() {
    skip_without_postfix!();
    let root = test_root();
    // Nothing listens on this port yet.
    let port = free_port();
    let mail2sms = Mail2sms::write(root.path(), &format!("127.0.0.1:{port}"), "reject");
    let postfix = Postfix::start(root.path(), &relay(port, ""));

    postfix.sendmail(SENDER, SMS_ADDRESS, &request(KEYID, "pf-down-1"));
    postfix
        .wait("the message to be deferred", |p| {
            p.queue().iter().any(|m| {
                m["queue_name"] == "deferred" && m["recipients"][0]["address"] == SMS_ADDRESS
            })
        })
        .await;
    let listing = postfix.queue_listing();
    assert!(listing.contains("Connection refused"), "{listing}");
    assert!(listing.contains(SMS_ADDRESS), "{listing}");

    let mut app = mail2sms.start().await;
    assert_eq!(app.addr.port(), port);
    postfix.flush();
    postfix.wait_queue_empty().await;
    let lines = mail2sms.exactly(1).await;
    assert_eq!(lines[0]["to"], "+33601020304", "{lines:?}");
    app.stop().await;
}

/// Waits until `postfix` deferred `n` times, failing at once if it
/// bounced instead.
async fn deferred(postfix: &Postfix, n: usize) {
    postfix
        .wait(&format!("{n} deferrals"), |p| {
            let log = p.log();
            assert!(!log.contains("status=bounced"), "bounced:\n{log}");
            log.matches("status=deferred").count() >= n
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_failure_in_the_pipe_defers_instead_of_bouncing() {
    skip_without_postfix!();
    use std::os::unix::fs::PermissionsExt;
    let root = test_root();
    let mail2sms = Mail2sms::write(root.path(), "127.0.0.1:0", "reject");
    // The configuration unreadable by the pipe's user (root's, 0600), and
    // the state directory not writable by it (root's, 0755).
    let mode = |m| std::fs::Permissions::from_mode(m);
    std::fs::set_permissions(&mail2sms.config, mode(0o600)).expect("chmod 600");
    let postfix = Postfix::start(root.path(), &pipe(&mail2sms, ""));

    postfix.sendmail(SENDER, SMS_ADDRESS, &request(KEYID, "pf-defer-1"));
    deferred(&postfix, 1).await;
    let log = postfix.log();
    assert!(log.contains("temporary failure"), "{log}");
    assert!(log.contains("mail2sms.toml"), "{log}");

    // The configuration fixed, the store still cannot be written.
    std::fs::set_permissions(&mail2sms.config, mode(0o644)).expect("chmod 644");
    postfix.flush();
    deferred(&postfix, 2).await;
    let log = postfix.log();
    let second = log.lines().filter(|l| l.contains("status=deferred")).nth(1);
    assert!(second.is_some_and(|l| l.contains("store")), "{log}");
    let queue = postfix.queue();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["queue_name"], "deferred", "{queue:?}");

    // Everything fixed: delivered once, never bounced.
    mail2sms.give_state_to_pipe_user();
    postfix.flush();
    postfix.wait_log("status=sent", 1).await;
    postfix.wait_queue_empty().await;
    assert!(
        !postfix.log().contains("status=bounced"),
        "{}",
        postfix.log()
    );
    let mut app = mail2sms.start().await;
    mail2sms.exactly(1).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_are_refused_at_rcpt_for_the_sms_domain() {
    skip_without_postfix!();
    let root = test_root();
    let port = free_port();
    let mut setup = relay(port, "");
    // The test's client (127.0.0.1) is neither in mynetworks nor
    // authenticated: a stranger.
    setup.main_cf = "mynetworks = 192.0.2.0/24\n".into();
    let postfix = Postfix::start(root.path(), &setup);
    let client = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(postfix.smtpd_port)
        .timeout(Some(Duration::from_secs(20)))
        .build();
    let envelope = lettre::address::Envelope::new(
        Some(SENDER.parse().expect("from")),
        vec![SMS_ADDRESS.parse().expect("to")],
    )
    .expect("envelope");
    let refused = client
        .send_raw(&envelope, &request(KEYID, "pf-stranger-1"))
        .await
        .expect_err("a stranger is refused");
    let text = refused.to_string();
    assert!(text.contains("local senders only"), "{text}");
    assert!(refused.is_permanent(), "{text}");
    assert!(postfix.queue().is_empty(), "{}", postfix.queue_listing());
}

/// The README's section on Postfix.
fn readme_section() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("\n## Behind Postfix\n")
        .expect("the README's Postfix section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

#[test]
fn the_readme_uses_exactly_the_example_files() {
    let section = readme_section();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Every file it names exists…
    let mut named = Vec::new();
    for prefix in ["examples/postfix/", "systemd/"] {
        for (i, _) in section.match_indices(prefix) {
            // Not the tail of another path (/etc/systemd/system/…).
            if section[..i].ends_with(|c: char| c == '/' || c.is_ascii_alphanumeric()) {
                continue;
            }
            let name: String = section[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                .collect();
            let name = name.trim_end_matches('.').to_string();
            if name != prefix {
                assert!(
                    root.join(&name).is_file(),
                    "the README names {name}, which does not exist"
                );
                named.push(name);
            }
        }
    }
    // …and it names every example file.
    for entry in std::fs::read_dir(root.join("examples/postfix")).expect("examples/postfix") {
        let name = format!(
            "examples/postfix/{}",
            entry.expect("entry").file_name().to_string_lossy()
        );
        assert!(named.contains(&name), "the README does not use {name}");
    }
    // The lines it quotes are the examples' own.
    let quoted = |block_start: &str| -> Vec<String> {
        let i = section
            .find(block_start)
            .unwrap_or_else(|| panic!("{block_start}"));
        let block = &section[i..];
        let end = block.find("```").expect("end of the block");
        block[..end].lines().map(str::to_string).collect()
    };
    let master = example("master.cf");
    for line in quoted("mail2sms  unix") {
        assert!(
            master.lines().any(|l| l == line),
            "master.cf lacks `{line}`"
        );
    }
    let main = example("main.cf");
    for line in quoted("smtpd_recipient_restrictions =") {
        assert!(main.lines().any(|l| l == line), "main.cf lacks `{line}`");
    }
    for (file, line) in [
        ("transport.smtp", "sms.example.com    smtp:[127.0.0.1]:2525"),
        ("transport.pipe", "sms.example.com    mail2sms:"),
    ] {
        assert!(
            example(file).lines().any(|l| l == line),
            "{file} lacks `{line}`"
        );
        let shown = line.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            section.contains(&shown),
            "the README does not show `{shown}`"
        );
    }
}

#[test]
fn the_example_mail2sms_configuration_is_valid_and_matches_postfix() {
    let config = Config::parse(&example("mail2sms.toml"), Path::new("mail2sms.toml"))
        .expect("examples/postfix/mail2sms.toml is valid");
    // The domain Postfix relays is the one mail2sms accepts, on the address
    // transport.smtp sends to.
    assert!(example("main.cf").contains("relay_domains = sms.example.com"));
    assert_eq!(config.smtp.domains, ["sms.example.com"]);
    assert_eq!(config.smtp.listen, "127.0.0.1:2525");
    // Above Postfix's message_size_limit, with room for its headers.
    let postfix_limit: usize = example("main.cf")
        .lines()
        .find_map(|l| l.strip_prefix("message_size_limit = "))
        .expect("message_size_limit")
        .parse()
        .expect("a number");
    assert!(config.smtp.max_message_size >= postfix_limit + 1024 * 1024);
    assert_eq!(
        config.smtp.unauthorized,
        mail2sms::smtp::Unauthorized::Discard
    );
    // Absolute paths: deliver runs in Postfix's queue directory.
    let toml = example("mail2sms.toml");
    for line in toml
        .lines()
        .filter(|l| l.starts_with("url =") || l.starts_with("path ="))
    {
        assert!(
            line.contains("\"/") || line.contains(":///"),
            "not absolute: {line}"
        );
    }
}
