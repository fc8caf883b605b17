//! The per-account SMS rules (issue 4), end to end: an email over SMTP, the
//! SMS as they reach the provider (the outbox), and each refusal's code in
//! etatNot.

use crate::common::*;
use jiff::Timestamp;
use mail2sms::clock::Clock;
use mail2sms::config::{Config, QuietHours, UnicodeMode};
use std::time::Duration;

fn body(nums: &[&str], sms: &str, email_id: &str, extra: &str) -> String {
    envoi_multi(nums, sms, email_id).replace("</envoi>", &format!("{extra}</envoi>"))
}

async fn send(app: &TestApp, body: &str) {
    let response = app
        .send("ops@masociete.com", &plain_email("ops@masociete.com", body))
        .await
        .expect("accepted");
    assert!(response.is_positive(), "{response:?}");
}

async fn spawn(tweak: impl FnOnce(&mut Config) + Send + 'static) -> TestApp {
    TestApp::spawn_with(move |c| {
        tweak(c);
    })
    .await
}

fn account(c: &mut Config) -> &mut mail2sms::config::AccountConfig {
    c.accounts.get_mut("masociete").unwrap()
}

/// A weekday at 10:00 Paris (allowed) and a Sunday (quiet), in the past so
/// that deferred SMS are due at once for the store.
const WEEKDAY: &str = "2025-01-08T09:00:00Z";
const SUNDAY: &str = "2025-01-05T12:00:00Z";
const SATURDAY_NIGHT: &str = "2025-01-04T21:00:00Z";

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A job row as the store keeps it.
#[derive(Debug)]
struct JobRow {
    tel: String,
    status: String,
    code: Option<i64>,
    detail: Option<String>,
    next_attempt_at: i64,
    held_until: Option<i64>,
    attempts: i64,
}

/// The jobs table, read directly from the daemon's database.
async fn jobs(app: &TestApp) -> Vec<JobRow> {
    use sqlx::Row;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(app.config.store.url.sqlite_path().unwrap())
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let rows = sqlx::query(
        "SELECT tel, status, code, detail, next_attempt_at, held_until, attempts FROM jobs ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let out = rows
        .iter()
        .map(|r| JobRow {
            tel: r.get("tel"),
            status: r.get("status"),
            code: r.get("code"),
            detail: r.get("detail"),
            next_attempt_at: r.get("next_attempt_at"),
            held_until: r.get("held_until"),
            attempts: r.get("attempts"),
        })
        .collect();
    pool.close().await;
    out
}

#[tokio::test]
async fn sender_ids_are_checked_and_the_default_applies() {
    let app = spawn(|c| {
        let a = account(c);
        a.default_sender_id = Some("MaSociete".into());
        a.sender_ids = vec!["MaSociete".into(), "MaSoc".into()];
    })
    .await;
    send(&app, &body(&["0601020304"], "a", "s1", "")).await;
    send(
        &app,
        &body(&["0601020305"], "b", "s2", "<emetteur>MaSoc</emetteur>\n"),
    )
    .await;
    send(
        &app,
        &body(
            &["0601020306", "0601020307"],
            "c",
            "s3",
            "<emetteur>Other</emetteur>\n",
        ),
    )
    .await;
    send(
        &app,
        &body(
            &["0601020308"],
            "d",
            "s4",
            "<emetteur>0612345678</emetteur>\n",
        ),
    )
    .await;
    let lines = app.wait_outbox(2).await;
    let sender = |n: &str| {
        lines
            .iter()
            .find(|l| l["to"] == n)
            .map(|l| l["sender_id"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(sender("+33601020304").as_deref(), Some("MaSociete"));
    assert_eq!(sender("+33601020305").as_deref(), Some("MaSoc"));
    let replies = app.wait_replies(8).await;
    let not_of = |id: &str| {
        replies
            .iter()
            .find(|r| {
                r.to == "not@masociete.com"
                    && r.text().contains(&format!("<emailId>{id}</emailId>"))
            })
            .unwrap_or_else(|| panic!("etatNot {id}"))
    };
    assert_eq!(
        etats(not_of("s3")),
        [
            (33, "0601020306".to_string()),
            (33, "0601020307".to_string())
        ]
    );
    assert_eq!(etats(not_of("s4")), [(33, "0601020308".to_string())]);
    assert_eq!(app.outbox().len(), 2);
    // The store and the log say exactly why.
    let rows = jobs(&app).await;
    let detail = |tel: &str| {
        rows.iter()
            .find(|r| r.tel == tel)
            .and_then(|r| r.detail.clone())
            .unwrap_or_default()
    };
    assert!(
        detail("0601020306").contains("`Other` is not one of the account's sender ids"),
        "{rows:?}"
    );
    assert!(
        detail("0601020308").contains("cannot be only digits"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn destination_countries_are_restricted() {
    let app = spawn(|c| account(c).countries = Some(vec!["FR".into(), "BE".into()])).await;
    send(
        &app,
        &body(
            &["0601020304", "+32470123456", "+41791234567"],
            "hi",
            "c1",
            "",
        ),
    )
    .await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(
        etats(&not),
        [
            (0, "0601020304".to_string()),
            (0, "+32470123456".to_string()),
            (27, "+41791234567".to_string())
        ]
    );
}

#[tokio::test]
async fn commercial_sms_carry_the_stop_mention_unless_allowed_to_drop_it() {
    let app = spawn(|c| {
        c.clock = Clock::manual(at(WEEKDAY));
        let a = account(c);
        a.commercial = true;
        a.stop_text = Some("STOP SMS au 36111".into());
        a.default_sender_id = Some("MaSociete".into());
    })
    .await;
    send(&app, &body(&["0601020304"], "Promo -10%", "p1", "")).await;
    send(
        &app,
        &body(&["0601020305"], "Promo -20%", "p2", "<nostop>1</nostop>\n"),
    )
    .await;
    let lines = app.wait_outbox(2).await;
    assert_eq!(
        text_for(&lines, "+33601020304"),
        "Promo -10% STOP SMS au 36111"
    );
    // nostop is not allowed for this account: the mention stays.
    assert_eq!(
        text_for(&lines, "+33601020305"),
        "Promo -20% STOP SMS au 36111"
    );

    let app = spawn(|c| {
        c.clock = Clock::manual(at(WEEKDAY));
        let a = account(c);
        a.commercial = true;
        a.stop_text = Some("STOP SMS au 36111".into());
        a.nostop_allowed = true;
    })
    .await;
    send(
        &app,
        &body(
            &["0601020305"],
            "Info",
            "p3",
            "<nostop>1</nostop><emetteur>MaSoc</emetteur>\n",
        ),
    )
    .await;
    send(
        &app,
        &body(
            &["0601020306"],
            "Info",
            "p4",
            "<emetteur>MaSoc</emetteur>\n",
        ),
    )
    .await;
    // No sender id: no mention (the operator's short code shows).
    send(&app, &body(&["0601020307"], "Info", "p5", "")).await;
    let lines = app.wait_outbox(3).await;
    assert_eq!(text_for(&lines, "+33601020305"), "Info");
    assert_eq!(text_for(&lines, "+33601020306"), "Info STOP SMS au 36111");
    assert_eq!(text_for(&lines, "+33601020307"), "Info");
}

#[tokio::test]
async fn too_many_segments_are_refused_never_cut() {
    let app = spawn(|c| account(c).max_segments = 2).await;
    let two = "x".repeat(306);
    let three = "x".repeat(307);
    send(&app, &body(&["0601020304"], &two, "g1", "")).await;
    send(&app, &body(&["0601020305"], &three, "g2", "")).await;
    send(
        &app,
        &body(&["0601020306"], &two, "g3", "<smslong>1</smslong>\n"),
    )
    .await;
    let replies = app.wait_replies(6).await;
    let code_of = |id: &str| {
        etats(
            replies
                .iter()
                .find(|r| {
                    r.to == "not@masociete.com"
                        && r.text().contains(&format!("<emailId>{id}</emailId>"))
                })
                .unwrap(),
        )[0]
        .0
    };
    assert_eq!((code_of("g1"), code_of("g2"), code_of("g3")), (0, 999, 999));
    let lines = app.outbox();
    assert_eq!(lines.len(), 1);
    assert_eq!(text_for(&lines, "+33601020304"), two);
    let rows = jobs(&app).await;
    let g2 = rows.iter().find(|r| r.tel == "0601020305").unwrap();
    assert_eq!((g2.status.as_str(), g2.code), ("failed", Some(999)));
    assert_eq!(
        g2.detail.as_deref(),
        Some(
            "text too long: 3 segments (GSM-7, 307 septets), limit 2 (max_segments 2); not sent, never cut"
        )
    );
    let g3 = rows.iter().find(|r| r.tel == "0601020306").unwrap();
    assert!(
        g3.detail
            .as_deref()
            .unwrap_or("")
            .contains("limit 1 (<smslong> 1)"),
        "{g3:?}"
    );
}

#[tokio::test]
async fn transliteration_brings_texts_to_gsm7() {
    let app = spawn(|c| account(c).unicode = UnicodeMode::Transliterate).await;
    send(
        &app,
        &body(&["0601020304"], "Noël à 50€ ça coûte “peu”", "t1", ""),
    )
    .await;
    let lines = app.wait_outbox(1).await;
    assert_eq!(
        text_for(&lines, "+33601020304"),
        "Noel à 50€ ca coute \"peu\""
    );
}

#[tokio::test]
async fn quiet_hours_reject_commercial_sms_with_code_24() {
    let app = spawn(|c| {
        c.clock = Clock::manual(at(SUNDAY));
        let a = account(c);
        a.commercial = true;
        a.stop_text = Some("STOP SMS au 36111".into());
    })
    .await;
    send(
        &app,
        &body(&["0601020304", "0601020305"], "Promo", "q1", ""),
    )
    .await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(
        etats(&not),
        [
            (24, "0601020304".to_string()),
            (24, "0601020305".to_string())
        ]
    );
    assert!(app.outbox().is_empty());
}

#[tokio::test]
async fn quiet_hours_defer_commercial_sms_across_a_restart() {
    let clock = Clock::manual(at(SATURDAY_NIGHT));
    let c2 = clock.clone();
    let app = spawn(move |c| {
        c.clock = c2;
        let a = account(c);
        a.commercial = true;
        a.stop_text = Some("STOP SMS au 36111".into());
        a.quiet_hours = QuietHours::Defer;
    })
    .await;
    send(&app, &body(&["0601020304"], "Promo", "q2", "")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.outbox().is_empty(), "nothing sent on Saturday night");
    // Deferred to Monday 08:00 Paris (07:00 UTC), not counted as a try, and
    // its age counted from then.
    let rows = jobs(&app).await;
    let monday = at("2025-01-06T07:00:00Z").as_millisecond();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].next_attempt_at, monday);
    assert_eq!(rows[0].held_until, Some(monday));
    // Each claim while it waits is given back (it may be mid-claim now).
    assert!(rows[0].attempts <= 1, "{rows:?}");
    // Still waiting on Sunday, and after a restart.
    clock.set(at(SUNDAY));
    let app = app.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(app.outbox().is_empty(), "nothing sent on Sunday");
    // Monday 08:00 Paris: it goes.
    clock.set(at("2025-01-06T07:00:00Z"));
    let lines = app.wait_outbox(1).await;
    assert_eq!(text_for(&lines, "+33601020304"), "Promo");
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(etats(&not), [(0, "0601020304".to_string())]);
}

#[tokio::test]
async fn sending_limits_refuse_the_overflow_with_code_29() {
    let app = spawn(|c| {
        c.clock = Clock::manual(at(WEEKDAY));
        account(c).max_per_minute = Some(2);
    })
    .await;
    send(
        &app,
        &body(&["0601020301", "0601020302", "0601020303"], "x", "v1", ""),
    )
    .await;
    send(&app, &body(&["0601020304"], "x", "v2", "")).await;
    let replies = app.wait_replies(4).await;
    let nots: Vec<_> = replies
        .iter()
        .filter(|r| r.to == "not@masociete.com")
        .collect();
    let v1 = nots
        .iter()
        .find(|r| r.text().contains("<emailId>v1<"))
        .unwrap();
    let v2 = nots
        .iter()
        .find(|r| r.text().contains("<emailId>v2<"))
        .unwrap();
    assert_eq!(
        etats(v1),
        [
            (0, "0601020301".to_string()),
            (0, "0601020302".to_string()),
            (29, "0601020303".to_string())
        ]
    );
    assert_eq!(etats(v2), [(29, "0601020304".to_string())]);
}

#[tokio::test]
async fn opted_out_numbers_get_code_11() {
    let app = TestApp::spawn().await;
    let store = app.running.as_ref().unwrap().store.clone();
    store.optout_add(None, "+33601020301").await.unwrap();
    store
        .optout_add(Some("masociete"), "+33601020302")
        .await
        .unwrap();
    store
        .optout_add(Some("other"), "+33601020303")
        .await
        .unwrap();
    send(
        &app,
        &body(&["0601020301", "0601020302", "0601020303"], "x", "o1", ""),
    )
    .await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(
        etats(&not),
        [
            (11, "0601020301".to_string()),
            (11, "0601020302".to_string()),
            (0, "0601020303".to_string())
        ]
    );
}

#[tokio::test]
async fn credits_are_debited_per_segment_and_an_empty_balance_is_code_12() {
    let app = spawn(|c| account(c).credits = true).await;
    let store = app.running.as_ref().unwrap().store.clone();
    store.add_credits("masociete", 3).await.unwrap();
    // Two segments, then one, then nothing left for the third SMS.
    send(&app, &body(&["0601020301"], &"x".repeat(200), "k1", "")).await;
    app.wait_reply_to("not@masociete.com").await;
    send(
        &app,
        &body(&["0601020302", "0601020303"], "short", "k2", ""),
    )
    .await;
    let replies = app.wait_replies(4).await;
    let k2 = replies
        .iter()
        .find(|r| r.to == "not@masociete.com" && r.text().contains("<emailId>k2<"))
        .unwrap();
    assert_eq!(
        etats(k2),
        [
            (0, "0601020302".to_string()),
            (12, "0601020303".to_string())
        ]
    );
    assert_eq!(store.credit_balance("masociete").await.unwrap(), Some(0));
    assert_eq!(app.outbox().len(), 2);
}

#[tokio::test]
async fn credits_of_an_sms_the_provider_did_not_take_are_given_back() {
    use crate::common::http_mock::{MockResponse, MockServer};
    let down = MockServer::start(|_| MockResponse::status(503)).await;
    let table = format!(
        "type = \"smsmode\"\nurl = \"{}\"\naccess_token = \"t\"\ntimeout_ms = 2000\n",
        down.url("/http/1.6/")
    );
    let provider: mail2sms::providers::ProviderConfig = toml::from_str(&table).unwrap();
    let app = spawn(move |c| {
        c.providers.insert("mode".into(), provider);
        c.dispatch.max_attempts = 2;
        let a = account(c);
        a.providers = vec!["mode".into()];
        a.credits = true;
    })
    .await;
    let store = app.running.as_ref().unwrap().store.clone();
    store.add_credits("masociete", 10).await.unwrap();
    send(&app, &body(&["0601020304"], &"x".repeat(200), "r1", "")).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(etats(&not), [(999, "0601020304".to_string())]);
    assert_eq!(
        down.requests().len(),
        2,
        "two tries, each debited and given back"
    );
    assert_eq!(store.credit_balance("masociete").await.unwrap(), Some(10));
}

#[tokio::test]
async fn the_daily_limit_survives_a_restart() {
    let app = spawn(|c| {
        c.clock = Clock::manual(at(WEEKDAY));
        account(c).max_per_day = Some(2);
    })
    .await;
    send(&app, &body(&["0601020301", "0601020302"], "x", "d1", "")).await;
    app.wait_outbox(2).await;
    let app = app.restart().await;
    send(&app, &body(&["0601020303"], "x", "d2", "")).await;
    let replies = app.wait_replies(4).await;
    let d2 = replies
        .iter()
        .find(|r| r.to == "not@masociete.com" && r.text().contains("<emailId>d2<"))
        .unwrap();
    assert_eq!(etats(d2), [(29, "0601020303".to_string())]);
}

/// Issue 8: `evil@evil.test@acme.test` passed an `@acme.test` rule. The
/// `From:` addresses below reach the rule as written and are refused with
/// `550 5.7.1` (nothing sent), while a plain address of the domain passes.
#[tokio::test]
async fn sender_addresses_are_parsed_not_suffix_matched() {
    let app = TestApp::spawn().await;
    for (i, from) in [
        "evil@evil.test@filiale.fr",
        "evil@filiale.fr.evil.test",
        "evil@sub.filiale.fr",
        "ops@masociete.com.",
    ]
    .into_iter()
    .enumerate()
    {
        let mail = plain_email(from, &envoi("0601020304", "x", &format!("hostile-{i}")));
        let result = app.send("bounce@mta.example", &mail).await;
        let error = result.expect_err(from).to_string();
        assert!(error.contains("5.7.1"), "{from}: {error}");
    }
    let mail = plain_email("anyone@filiale.fr", &envoi("0601020304", "ok", "fine-1"));
    let ok = app
        .send("bounce@mta.example", &mail)
        .await
        .expect("allowed");
    assert!(ok.is_positive());
    let lines = app.wait_outbox(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.outbox().len(), 1, "{lines:?}");
}
