//! The command line, through the real binary: `deliver` (an MTA's pipe
//! transport) and its sysexits codes, and `check-config`.

use crate::common::*;
use mail2sms::config::Config;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PASSWORD: &str = "s3cr3tP4ss";

/// Runs `mail2sms ARGS` in `cwd` with `stdin` as its standard input.
fn mail2sms(args: &[&str], cwd: &Path, stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mail2sms"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mail2sms");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    // A separate thread: the child may exit without reading (bad config).
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("wait for mail2sms");
    let _ = writer.join();
    output
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `toml` as `dir/mail2sms.toml` and returns its path.
fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("mail2sms.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

/// `mail2sms deliver --config FILE < message`.
fn deliver(dir: &Path, config: &Path, message: &[u8]) -> Output {
    mail2sms(
        &["deliver", "--config", config.to_str().expect("utf-8 path")],
        dir,
        message,
    )
}

/// `mail2sms check-config --config FILE` on `toml`.
fn check_config(toml: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), toml);
    mail2sms(
        &[
            "check-config",
            "--config",
            config.to_str().expect("utf-8 path"),
        ],
        dir.path(),
        b"",
    )
}

fn describe(o: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// The test configuration with replies relayed through an SMTP server that
/// needs a password.
fn toml_with_password(dir: &Path) -> String {
    let toml = test_toml(dir);
    let file = format!("transport = \"file://{}/replies\"", dir.display());
    assert!(toml.contains(&file));
    toml.replace(
        &file,
        &format!("transport = \"smtp://user:{PASSWORD}@127.0.0.1:25\""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_stores_the_request_for_the_daemon_to_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = write_config(dir.path(), &test_toml(dir.path()));
    let message = plain_email(
        "ops@masociete.com",
        &envoi_multi(&["0601020304", "0601020305"], "par deliver", "cli-1"),
    );

    let first = deliver(dir.path(), &config_path, &message);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let out = stdout(&first);
    assert!(out.starts_with("250 2.0.0 "), "{out}");
    assert!(out.contains("(2 SMS)"), "{out}");
    // deliver only stores: nothing is sent until the daemon runs.
    assert!(read_outbox(&dir.path().join("outbox.jsonl")).is_empty());

    // The same emailId again: accepted (exit 0), nothing more queued.
    let again = deliver(dir.path(), &config_path, &message);
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(
        stdout(&again).contains("already processed"),
        "{}",
        describe(&again)
    );

    let config = Config::load(&config_path).expect("config");
    let mut app = TestApp::start_in(dir, config).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert!(
        not.text().contains("<code1>0</code1>") && not.text().contains("<code2>0</code2>"),
        "{}",
        not.text()
    );
    app.stop().await;
    let lines = app.outbox();
    let mut to: Vec<&str> = lines.iter().map(|l| l["to"].as_str().unwrap()).collect();
    to.sort_unstable();
    assert_eq!(to, ["+33601020304", "+33601020305"]);
    assert!(lines.iter().all(|l| l["text"] == "par deliver"));
    let acks: Vec<String> = app
        .replies()
        .iter()
        .filter(|r| r.to == "ack@masociete.com")
        .map(|r| r.text())
        .collect();
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert!(
        acks.iter().any(|a| a.contains("<code>0</code>")),
        "{acks:?}"
    );
    assert!(
        acks.iter().any(|a| a.contains("<code>1</code>")),
        "{acks:?}"
    );
}

/// `mail2sms deliver --config FILE ARGS… < message`: sendmail's arguments.
fn deliver_with(dir: &Path, config: &Path, args: &[&str], message: &[u8]) -> Output {
    let mut all = vec!["deliver", "--config", config.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    mail2sms(&all, dir, message)
}

/// `email` without its `From:` header: the envelope sender stands in.
fn without_from(email: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(email.to_vec()).expect("utf-8");
    let (from, rest) = text.split_once("\r\n").expect("a From: line first");
    assert!(from.starts_with("From: "), "{from}");
    rest.as_bytes().to_vec()
}

#[test]
fn deliver_takes_the_recipients_as_arguments_like_sendmail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &test_toml(dir.path()));
    // As Postfix's pipe runs it: -f ${sender} ${recipient}.
    let message = plain_email("ops@masociete.com", &envoi("0601020304", "x", "rcpt-1"));
    let args = ["-f", "ops@masociete.com", "sms@sms.example.com"];
    let out = deliver_with(dir.path(), &config, &args, &message);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("(1 SMS)"), "{}", describe(&out));
    // Several recipients, and the null sender (an empty -f).
    let message = plain_email("ops@masociete.com", &envoi("0601020304", "x", "rcpt-2"));
    let args = ["-f", "", "sms@sms.example.com", "other@sms.example.com"];
    let out = deliver_with(dir.path(), &config, &args, &message);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // Addresses starting with "-", as Postfix's pipe passes them
    // (`-f ${sender} -- ${recipient}`): values, not options.
    let message = plain_email(
        "ops@masociete.com",
        &envoi("0601020304", "x", "rcpt-hyphen"),
    );
    let args = ["-f", "-ops@masociete.com", "--", "-sms@sms.example.com"];
    let out = deliver_with(dir.path(), &config, &args, &message);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("(1 SMS)"), "{}", describe(&out));
    // Recipients stay optional for <envoi> mail.
    let message = plain_email("ops@masociete.com", &envoi("0601020304", "x", "rcpt-3"));
    let out = deliver_with(dir.path(), &config, &[], &message);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn deliver_checks_the_envelope_sender_of_f_when_there_is_no_from_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &test_toml(dir.path()));
    let email = |id: &str| {
        without_from(&plain_email(
            "ops@masociete.com",
            &envoi("0601020304", "x", id),
        ))
    };
    let allowed = ["-f", "ops@masociete.com", "sms@sms.example.com"];
    let out = deliver_with(dir.path(), &config, &allowed, &email("f-1"));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stranger = ["-f", "intruder@evil.example", "sms@sms.example.com"];
    let out = deliver_with(dir.path(), &config, &stranger, &email("f-2"));
    assert_eq!(out.status.code(), Some(77), "{}", describe(&out));
    assert!(stderr(&out).contains("550 5.7.1"), "{}", describe(&out));
    let out = deliver_with(dir.path(), &config, &["sms@sms.example.com"], &email("f-3"));
    assert_eq!(out.status.code(), Some(77), "{}", describe(&out));
}

#[test]
fn deliver_without_envoi_exits_65() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &test_toml(dir.path()));
    let message = plain_email("ops@masociete.com", "Bonjour,\nun SMS au 0601020304 svp.\n");
    let out = deliver(dir.path(), &config, &message);
    assert_eq!(out.status.code(), Some(65), "{}", describe(&out));
    assert!(stderr(&out).contains("550 5.6.0"), "{}", describe(&out));
    assert!(stdout(&out).is_empty(), "{}", describe(&out));
}

#[test]
fn deliver_refuses_a_message_over_the_size_limit_with_65() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = test_toml(dir.path()).replace(
        "domains = [\"sms.example.com\"]",
        "domains = [\"sms.example.com\"]\nmax_message_size = 2000",
    );
    let config = write_config(dir.path(), &toml);
    let mut body = envoi("0601020304", "x", "big-deliver");
    body.push_str(&"filler line\n".repeat(400));
    let out = deliver(
        dir.path(),
        &config,
        &plain_email("ops@masociete.com", &body),
    );
    assert_eq!(out.status.code(), Some(65), "{}", describe(&out));
    assert!(stderr(&out).contains("552 5.3.4"), "{}", describe(&out));
}

#[test]
fn deliver_with_an_unknown_keyid_exits_77() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &test_toml(dir.path()));
    let body = envoi("0601020304", "x", "k-1").replace(KEYID, "not-a-key");
    let out = deliver(
        dir.path(),
        &config,
        &plain_email("ops@masociete.com", &body),
    );
    assert_eq!(out.status.code(), Some(77), "{}", describe(&out));
    assert!(stderr(&out).contains("550 5.7.1"), "{}", describe(&out));
    // A sender not allowed for the keyid is refused the same way.
    let body = envoi("0601020304", "x", "k-2");
    let out = deliver(
        dir.path(),
        &config,
        &plain_email("intruder@evil.example", &body),
    );
    assert_eq!(out.status.code(), Some(77), "{}", describe(&out));
}

#[test]
fn deliver_with_the_store_unavailable_exits_75() {
    let dir = tempfile::tempdir().expect("tempdir");
    let message = plain_email("ops@masociete.com", &envoi("0601020304", "x", "u-1"));
    let default_store = format!("path = \"{}/mail2sms.db\"", dir.path().display());
    // A directory that cannot be created, and a file where a directory
    // should be.
    std::fs::write(dir.path().join("a-file"), "not a directory").expect("file");
    let unusable = [
        "/proc/nonexistent/x.db".to_string(),
        format!("{}/a-file/x.db", dir.path().display()),
    ];
    for store in unusable {
        let toml = test_toml(dir.path()).replace(&default_store, &format!("path = \"{store}\""));
        assert!(toml.contains(&store));
        let config = write_config(dir.path(), &toml);
        let out = deliver(dir.path(), &config, &message);
        assert_eq!(out.status.code(), Some(75), "{store}: {}", describe(&out));
        assert!(
            stderr(&out).contains("store"),
            "{store}: {}",
            describe(&out)
        );
    }
}

/// `mail2sms ARGS` in `cwd` with the given standard input and output
/// (standard error captured).
fn mail2sms_io(args: &[&str], cwd: &Path, stdin: Stdio, stdout: Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mail2sms"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("run mail2sms")
}

#[test]
fn deliver_defers_with_75_on_a_configuration_problem() {
    // Behind Postfix any other code bounces the message: a broken
    // configuration must keep mail queued until it is fixed.
    let dir = tempfile::tempdir().expect("tempdir");
    let message = plain_email("ops@masociete.com", &envoi("0601020304", "x", "cfg-1"));
    let missing = dir.path().join("missing.toml");
    let out = deliver(dir.path(), &missing, &message);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(stderr(&out).contains("missing.toml"), "{}", describe(&out));

    let bad = test_toml(dir.path()).replace(
        "[smtp]
",
        "[smtp]
no_such_key = 1
",
    );
    let bad = write_config(dir.path(), &bad);
    let out = deliver(dir.path(), &bad, &message);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(stderr(&out).contains("no_such_key"), "{}", describe(&out));

    // A mistyped argv= in master.cf is a configuration problem too.
    let good = write_config(dir.path(), &test_toml(dir.path()));
    let out = deliver_with(dir.path(), &good, &["--no-such-option"], &message);
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(
        stderr(&out).contains("--no-such-option"),
        "{}",
        describe(&out)
    );
    // Nothing was stored by any of them: the message itself is still new.
    let out = deliver(dir.path(), &good, &message);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("(1 SMS)"), "{}", describe(&out));

    // The other commands keep EX_CONFIG and clap's usage code.
    let out = mail2sms(
        &["check-config", "--config", missing.to_str().expect("utf-8")],
        dir.path(),
        b"",
    );
    assert_eq!(out.status.code(), Some(78), "{}", describe(&out));
    let out = mail2sms(&["serve", "--no-such-option"], dir.path(), b"");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn deliver_defers_with_75_when_standard_input_cannot_be_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &test_toml(dir.path()));
    // Reading a directory fails with EISDIR.
    let stdin = std::fs::File::open(dir.path()).expect("open the directory");
    let out = mail2sms_io(
        &["deliver", "--config", config.to_str().expect("utf-8")],
        dir.path(),
        Stdio::from(stdin),
        Stdio::piped(),
    );
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(
        stderr(&out).contains("standard input"),
        "{}",
        describe(&out)
    );
}

#[test]
fn deliver_defers_with_75_on_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &test_toml(dir.path()));
    let message = plain_email("ops@masociete.com", &envoi("0601020304", "x", "panic-1"));
    // A standard output whose reader is gone: printing the 250 line fails
    // with EPIPE, and println! panics (Rust's default exit code: 101).
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let input = dir.path().join("message.eml");
    std::fs::write(&input, &message).expect("write the message");
    let out = mail2sms_io(
        &["deliver", "--config", config.to_str().expect("utf-8")],
        dir.path(),
        Stdio::from(std::fs::File::open(&input).expect("open the message")),
        Stdio::from(writer),
    );
    assert_eq!(out.status.code(), Some(75), "{}", describe(&out));
    assert!(stderr(&out).contains("panicked"), "{}", describe(&out));
    // The MTA's retry finds the request stored: accepted, no second SMS.
    let out = deliver(dir.path(), &config, &message);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("already processed"),
        "{}",
        describe(&out)
    );
}

#[test]
fn check_config_summarises_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = check_config(&toml_with_password(dir.path()));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("account masociete"), "{text}");
    assert!(text.contains("providers outbox"), "{text}");
    assert!(text.contains("provider outbox"), "{text}");
    assert!(text.contains("127.0.0.1:25"), "{text}");
    assert!(text.contains("configuration OK"), "{text}");
    let all = format!("{text}{}", stderr(&out));
    assert!(!all.contains(KEYID), "the keyid is shown in full: {all}");
    assert!(!all.contains(PASSWORD), "the password is shown: {all}");
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = test_toml(dir.path()).replace("[smtp]\n", "[smtp]\nlisten_typo = 1\n");
    let out = check_config(&toml);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stderr(&out).contains("listen_typo"), "{}", describe(&out));
    assert!(!stdout(&out).contains("configuration OK"));
}

#[test]
fn check_config_names_an_account_whose_provider_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = test_toml(dir.path()).replace(
        "providers = [\"outbox\"]",
        "providers = [\"outbox\", \"nosuch\"]",
    );
    let out = check_config(&toml);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("accounts.masociete.providers") && err.contains("nosuch"),
        "{}",
        describe(&out)
    );
}

#[test]
fn check_config_names_a_bad_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = test_toml(dir.path()).replace("[smtp]\n", "[smtp]\nmax_connections = \"many\"\n");
    let out = check_config(&toml);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stderr(&out).contains("max_connections"),
        "{}",
        describe(&out)
    );
}

#[test]
fn check_config_errors_never_show_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = toml_with_password(dir.path());
    let line = format!("transport = \"smtp://user:{PASSWORD}@127.0.0.1:25\"");
    let broken = [
        // A value the transport parser refuses.
        (
            "bad port",
            good.replace("@127.0.0.1:25\"", "@127.0.0.1:smtp\""),
        ),
        // TOML syntax errors on the line holding the password: the parser's
        // message quotes the line.
        ("stray text", good.replace(&line, &format!("{line} x"))),
        (
            "duplicate key",
            good.replace(&line, &format!("{line}\n{line}")),
        ),
    ];
    for (what, toml) in broken {
        let out = check_config(&toml);
        assert_ne!(out.status.code(), Some(0), "{what}: {}", describe(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !all.contains(PASSWORD),
            "{what}: the password is shown: {all}"
        );
    }
}

#[test]
fn check_config_without_a_file_checks_the_embedded_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = mail2sms(&["check-config"], dir.path(), b"");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("account demo"), "{text}");
    assert!(text.contains("configuration OK"), "{text}");
    assert!(!text.contains(KEYID), "{text}");
}

#[test]
fn the_example_configuration_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mail2sms.toml");
    assert!(
        example.exists(),
        "{} is missing: the documented example configuration",
        example.display()
    );
    Config::load(&example).unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = mail2sms(
        &[
            "check-config",
            "--config",
            example.to_str().expect("utf-8 path"),
        ],
        dir.path(),
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("configuration OK"),
        "{}",
        describe(&out)
    );
}

/// Runs the binary off the async workers (mock servers run on them).
async fn mail2sms_async(args: Vec<String>, cwd: PathBuf) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mail2sms(&args, &cwd, b"")
    })
    .await
    .expect("command thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_check_reports_balances_and_refusals_without_secrets() {
    use crate::common::http_mock::{MockResponse, MockServer};
    let mode = MockServer::start(|r| {
        if r.path.ends_with("credit.do") {
            MockResponse::ok("text/plain", "212.5")
        } else {
            MockResponse::status(404)
        }
    })
    .await;
    let factor = MockServer::start(|_| {
        MockResponse::ok(
            "text/xml",
            "<response><status>-1</status><message>Login ou mot de passe incorrect</message></response>",
        )
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = test_toml(dir.path()).replace(
        "providers = [\"outbox\"]",
        "providers = [\"mode\", \"factor\"]",
    );
    let mode_table = format!(
        "\n[providers.mode]\ntype = \"smsmode\"\nurl = \"{}\"\naccess_token = \"tok-s3cr3t\"\n",
        mode.url("/http/1.6/")
    );
    let factor_table = format!(
        "\n[providers.factor]\ntype = \"smsfactor\"\nurl = \"{}\"\nusername = \"ops@masociete.com\"\npassword = \"pw-s3cr3t\"\n",
        factor.url("/API/")
    );
    let config = write_config(dir.path(), &(base.clone() + &mode_table + &factor_table));
    let out = mail2sms_async(
        vec![
            "providers".into(),
            "check".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        dir.path().to_path_buf(),
    )
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(69), "{}", describe(&out));
    assert!(
        text.lines()
            .any(|l| l.starts_with("provider mode ") && l.contains("OK") && l.contains("212.5")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("provider factor ")
            && l.contains("FAILED")
            && l.contains("code 3")),
        "{text}"
    );
    assert!(text.contains("provider outbox"), "{text}");
    for secret in ["tok-s3cr3t", "pw-s3cr3t"] {
        assert!(
            !text.contains(secret) && !stderr(&out).contains(secret),
            "{secret}"
        );
    }
    // Nothing was sent: only the balance and credential calls.
    assert!(
        mode.requests()
            .iter()
            .all(|r| r.path.ends_with("credit.do"))
    );
    assert!(
        factor
            .requests()
            .iter()
            .all(|r| r.path.ends_with("getDr.php"))
    );

    // All usable: exit code 0.
    let config = write_config(
        dir.path(),
        &(base.replace("[\"mode\", \"factor\"]", "[\"mode\"]") + &mode_table),
    );
    let out = mail2sms_async(
        vec![
            "providers".into(),
            "check".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        dir.path().to_path_buf(),
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_and_optout_commands_work_while_the_daemon_runs() {
    let app = TestApp::spawn_with(|c| {
        c.accounts.get_mut("masociete").unwrap().credits = true;
    })
    .await;
    let toml = test_toml(app.dir.path()).replace(
        "providers = [\"outbox\"]",
        "providers = [\"outbox\"]\ncredits = true",
    );
    let config = write_config(app.dir.path(), &toml);
    let run = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push("--config".into());
        all.push(config.display().to_string());
        mail2sms_async(all, app.dir.path().to_path_buf())
    };
    let out = run(&["credits", "show", "masociete"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("no balance yet"),
        "{}",
        describe(&out)
    );
    let out = run(&["credits", "add", "masociete", "3"]).await;
    assert_eq!(
        stdout(&out).trim(),
        "masociete: 3 segments",
        "{}",
        describe(&out)
    );
    let out = run(&["credits", "add", "masociete", "-1"]).await;
    assert_eq!(
        stdout(&out).trim(),
        "masociete: 2 segments",
        "{}",
        describe(&out)
    );
    let out = run(&["credits", "add", "nobody", "1"]).await;
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("no account named `nobody`"),
        "{}",
        describe(&out)
    );

    let out = run(&["optout", "add", "06 01 02 03 05"]).await;
    assert_eq!(
        stdout(&out).trim(),
        "+33601020305: opted out for every account",
        "{}",
        describe(&out)
    );
    let out = run(&["optout", "add", "--account", "masociete", "0601020306"]).await;
    assert!(
        stdout(&out).contains("account masociete"),
        "{}",
        describe(&out)
    );
    let out = run(&["optout", "add", "not-a-number"]).await;
    assert_ne!(out.status.code(), Some(0));
    let out = run(&["optout", "list"]).await;
    let listed = stdout(&out);
    assert!(listed.contains("+33601020305\t*"), "{listed}");
    assert!(listed.contains("+33601020306\tmasociete"), "{listed}");

    // The daemon sees both at once: 11 for the opted-out numbers, the
    // credits for the others, 12 when they run out.
    let body = envoi_multi(
        &[
            "0601020304",
            "0601020305",
            "0601020306",
            "0601020307",
            "0601020308",
        ],
        "x",
        "cli-credits",
    );
    let response = app
        .send(
            "ops@masociete.com",
            &plain_email("ops@masociete.com", &body),
        )
        .await
        .expect("accepted");
    assert!(response.is_positive());
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(codes(&not), [0, 11, 11, 0, 12], "{}", not.text());
    let out = run(&["credits", "show", "masociete"]).await;
    assert_eq!(stdout(&out).trim(), "masociete: 0 segments");
    let out = run(&["optout", "remove", "0601020305"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = run(&["optout", "remove", "0601020305"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}
