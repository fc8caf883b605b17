//! The alert reader over real parsed emails: addressing, groups, texts.

use super::*;
use crate::request::{EnvoiReader, Readers};
use crate::rules::AccountConfig;
use jiff::Timestamp;

/// An account from its TOML keys (keyid, senders and providers given).
fn account(keys: &str) -> AccountConfig {
    let toml = format!("keyid = \"k\"\nsenders = [\"@example.com\"]\nproviders = [\"p\"]\n{keys}");
    let account: AccountConfig = toml::from_str(&toml).expect("account");
    account.validate().expect("valid account");
    account
}

/// The alert settings of the accounts that take alerts.
fn settings(accounts: &BTreeMap<String, AccountConfig>) -> Vec<(String, AlertSettings)> {
    accounts
        .iter()
        .filter(|(_, a)| a.alerts)
        .map(|(name, a)| (name.clone(), a.alert_settings()))
        .collect()
}

/// A book of one alert account `ops` (groups `oncall` and `night`) for
/// `sms.example.com`, with these extra keys.
fn book_with(keys: &str) -> Arc<AlertBook> {
    let ops = account(&format!(
        "alerts = true\n{keys}\n[groups]\noncall = [\"+33601020304\", \"0601020305\"]\nnight = [\"06 01 02 03 06\"]\n"
    ));
    let accounts = BTreeMap::from([("ops".to_string(), ops), ("plain".to_string(), account(""))]);
    Arc::new(AlertBook::new(
        settings(&accounts),
        &["SMS.example.com".to_string()],
    ))
}

fn book() -> Arc<AlertBook> {
    book_with("")
}

/// An envelope to these recipients.
fn to(recipients: &[&str]) -> Envelope {
    Envelope {
        mail_from: "nagios@example.com".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        ..Envelope::default()
    }
}

/// A parsed email from its raw text (LF made CRLF).
fn email(raw: &str) -> ParsedMail {
    crate::mail::parse(raw.replace('\n', "\r\n").as_bytes()).expect("email")
}

fn disk_full() -> ParsedMail {
    email("From: nagios@example.com\nSubject: PROBLEM: disk\n\nhost1 /var 95%\n")
}

/// 2026-07-01 14:05 in Paris.
const RECEIVED: &str = "2026-07-01T12:05:00Z";

/// Reads and builds an alert for `ops`.
fn build(
    book: &Arc<AlertBook>,
    envelope: &Envelope,
    mail: &ParsedMail,
) -> Result<Request, RequestError> {
    let head = AlertReader::new(book.clone()).head(envelope, mail)?;
    assert_eq!(head.keyid(), None);
    let context = BuildContext {
        limits: Limits::default(),
        account: "ops",
        received: RECEIVED.parse().expect("ts"),
    };
    head.build(mail, &context)
}

/// The numbers and texts of an alert.
fn sms(request: Request) -> Vec<(String, String)> {
    request
        .recipients
        .expect("recipients")
        .into_iter()
        .map(|r| (r.tel, r.text))
        .collect()
}

#[test]
fn a_number_in_any_form_is_one_sms_with_the_subject_and_body() {
    let forms = [
        "+33601020304@sms.example.com",
        "0033601020304@sms.example.com",
        "33601020304@SMS.Example.com",
        "0601020304@sms.example.com",
        "06.01.02.03.04@sms.example.com",
        "06-01-02-03-04@sms.example.com",
    ];
    for form in forms {
        let request = build(&book(), &to(&[form]), &disk_full()).expect(form);
        assert_eq!(request.email_id, None);
        assert_eq!(request.email_ack, None);
        let local = form.split('@').next().expect("local");
        assert_eq!(
            sms(request),
            [(
                local.to_string(),
                "PROBLEM: disk\nhost1 /var 95%".to_string()
            )]
        );
    }
    let all = build(&book(), &to(&forms), &disk_full()).expect("all");
    assert_eq!(sms(all).len(), 1, "one SMS per distinct number");
}

#[test]
fn a_group_is_an_sms_to_each_of_its_numbers_once() {
    let request = build(
        &book(),
        &to(&[
            "OnCall@sms.example.com",
            "0601020305@sms.example.com",
            "night@sms.example.com",
        ]),
        &disk_full(),
    )
    .expect("groups");
    let tels: Vec<String> = sms(request).into_iter().map(|(tel, _)| tel).collect();
    assert_eq!(tels, ["+33601020304", "0601020305", "06 01 02 03 06"]);
}

#[test]
fn recipients_of_other_domains_are_ignored() {
    let request = build(
        &book(),
        &to(&["0601020304@elsewhere.example", "0601020305@sms.example.com"]),
        &disk_full(),
    )
    .expect("alert");
    assert_eq!(sms(request)[0].0, "0601020305");
    let err = AlertReader::new(book())
        .head(&to(&["0601020304@elsewhere.example"]), &disk_full())
        .err();
    assert_eq!(err, Some(RequestError::NoEnvoi));
}

#[test]
fn a_name_that_is_no_group_is_refused_naming_it() {
    let err = AlertReader::new(book())
        .head(&to(&["oncal\u{7}l@sms.example.com"]), &disk_full())
        .err()
        .expect("no such group");
    assert!(err.is_absent());
    let text = err.to_string();
    assert!(text.contains("no group named `oncal\\u{7}l`"), "{text}");
    // With a number beside it, the head is read; the account has no such
    // group: the whole email is refused, nothing is sent to the rest.
    let err = build(
        &book(),
        &to(&["0601020304@sms.example.com", "ops@sms.example.com"]),
        &disk_full(),
    )
    .expect_err("unknown group");
    assert_eq!(err, RequestError::NoSuchGroup { name: "ops".into() });
}

#[test]
fn without_alert_accounts_mail_without_envoi_is_refused_as_before() {
    let accounts = BTreeMap::from([("plain".to_string(), account(""))]);
    let book = Arc::new(AlertBook::new(
        settings(&accounts),
        &["sms.example.com".to_string()],
    ));
    let reader = AlertReader::new(book);
    let envelope = to(&["0601020304@sms.example.com"]);
    assert_eq!(
        reader.head(&envelope, &disk_full()).err(),
        Some(RequestError::NoEnvoi)
    );
    let html = email("From: a@example.com\nContent-Type: text/html\n\n<p>disk</p>\n");
    assert_eq!(
        reader.head(&envelope, &html).err(),
        Some(RequestError::HtmlOnly)
    );
}

#[test]
fn a_message_with_envoi_is_read_as_envoi_whatever_its_recipients() {
    let mail = email(
        "From: ops@example.com\nSubject: x\n\n<envoi><keyid>k</keyid><num>0601020304</num><sms>hi</sms></envoi>\n",
    );
    let head = Readers::standard(book())
        .head(&to(&["0601020305@sms.example.com"]), &mail)
        .expect("envoi");
    assert_eq!(head.keyid(), Some("k"));
    let alert = Readers::new(vec![
        Box::new(EnvoiReader),
        Box::new(AlertReader::new(book())),
    ])
    .head(&to(&["0601020305@sms.example.com"]), &disk_full())
    .expect("alert");
    assert_eq!(alert.keyid(), None);
}

#[test]
fn html_only_mail_is_sent_as_text() {
    let mail = email(
        "From: ups@example.com\nSubject: UPS\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>On <b>battery</b></p><p>&eacute;t&eacute; 5 min</p></body></html>\n",
    );
    let text =
        &sms(build(&book(), &to(&["0601020304@sms.example.com"]), &mail).expect("html"))[0].1;
    assert!(text.starts_with("UPS\nOn battery"), "{text}");
    assert!(!text.contains('<') && text.contains("été 5 min"), "{text}");
}

#[test]
fn encoded_subjects_and_bodies_are_decoded() {
    let latin1 = email(
        "From: a@example.com\nSubject: =?ISO-8859-1?Q?Temp=E9rature_=E9lev=E9e?=\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nsalle =E0 35=B0C\n",
    );
    let text =
        &sms(build(&book(), &to(&["0601020304@sms.example.com"]), &latin1).expect("qp"))[0].1;
    assert_eq!(text, "Température élevée\nsalle à 35°C");
    let utf8 = email(
        "From: a@example.com\nSubject: =?UTF-8?B?w4l0ZWludCDinJM=?=\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nc2VydmV1ciDDqXRlaW50\n",
    );
    let text = &sms(build(&book(), &to(&["0601020304@sms.example.com"]), &utf8).expect("b64"))[0].1;
    assert_eq!(text, "Éteint ✓\nserveur éteint");
}

#[test]
fn the_template_renders_per_recipient_address_with_the_paris_date() {
    let book = book_with(
        "alert_template = \"{{ date }} {{ from }}>{{ to }}: {{ subject }} / {{ body }}\"",
    );
    let mail = disk_full();
    let request = build(
        &book,
        &to(&["oncall@sms.example.com", "0601020306@sms.example.com"]),
        &mail,
    )
    .expect("template");
    let texts = sms(request);
    assert_eq!(
        texts[0].1,
        "2026-07-01 14:05 nagios@example.com>oncall@sms.example.com: PROBLEM: disk / host1 /var 95%"
    );
    assert_eq!(
        texts[2].1,
        "2026-07-01 14:05 nagios@example.com>0601020306@sms.example.com: PROBLEM: disk / host1 /var 95%"
    );
    // A Date: header wins over the reception time (winter: UTC+1).
    let dated =
        email("From: a@example.com\nDate: Thu, 15 Jan 2026 08:00:00 +0000\nSubject: s\n\nb\n");
    let text =
        &sms(build(&book, &to(&["0601020304@sms.example.com"]), &dated).expect("dated"))[0].1;
    assert!(
        text.starts_with("2026-01-15 09:00 a@example.com>"),
        "{text}"
    );
}

#[test]
fn a_template_that_fails_refuses_the_alert_naming_it() {
    let book = book_with("alert_template = \"{{ subject | truncate(\\\"x\\\") }}\"");
    let err = build(&book, &to(&["0601020304@sms.example.com"]), &disk_full()).expect_err("render");
    assert!(matches!(err, RequestError::AlertTemplate { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("alert_template cannot be rendered"),
        "{err}"
    );
}

#[test]
fn a_long_alert_is_cut_to_max_segments() {
    let book = book_with("max_segments = 2");
    let mail = email(&format!(
        "From: a@example.com\nSubject: big\n\n{}\n",
        "disk full on host1 ".repeat(50)
    ));
    let text = &sms(build(&book, &to(&["0601020304@sms.example.com"]), &mail).expect("long"))[0].1;
    assert!(text.ends_with("..."), "{text}");
    let segments = crate::gsm::segments(text);
    assert!(segments.count <= 2);
    assert_eq!(segments.encoding, crate::gsm::Encoding::Gsm7);
}

#[test]
fn the_bound_covers_what_is_built() {
    let reader = AlertReader::new(book());
    let envelope = to(&["oncall@sms.example.com", "0601020306@sms.example.com"]);
    let mail = disk_full();
    let head = reader.head(&envelope, &mail).expect("head");
    let bound = head.expansion_bound(&mail, &Limits::default());
    let built = build(&book(), &envelope, &mail).expect("built");
    let recipients = built.recipients.expect("recipients");
    assert!(bound.recipients >= recipients.len());
    let bytes: usize = recipients.iter().map(|r| r.tel.len() + r.text.len()).sum();
    assert!(bound.text_bytes >= bytes);
}

#[test]
fn groups_are_re_read_and_a_bad_file_keeps_the_old_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("groups.toml");
    std::fs::write(&file, "dba = [\"0601020307\"]\n").expect("write");
    let book = book_with(&format!("groups_file = {:?}", file.display().to_string()));
    let built = build(&book, &to(&["dba@sms.example.com"]), &disk_full()).expect("dba");
    assert_eq!(sms(built)[0].0, "0601020307");
    std::fs::write(&file, "dba = [\"0601020308\"]\nweb = [\"0601020309\"]\n").expect("write");
    assert!(book.reload_groups().is_empty());
    let built = build(
        &book,
        &to(&["dba@sms.example.com", "web@sms.example.com"]),
        &disk_full(),
    )
    .expect("new");
    let tels: Vec<String> = sms(built).into_iter().map(|(t, _)| t).collect();
    assert_eq!(tels, ["0601020308", "0601020309"]);
    std::fs::write(&file, "dba = [\"12\"]\n").expect("write");
    let errors = book.reload_groups();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("accounts.ops.groups_file") && errors[0].contains("`12`"),
        "{errors:?}"
    );
    let kept = build(&book, &to(&["web@sms.example.com"]), &disk_full()).expect("kept");
    assert_eq!(sms(kept)[0].0, "0601020309");
}

#[test]
fn the_alert_keys_are_checked_with_the_account() {
    let bad = |keys: &str| {
        let toml =
            format!("keyid = \"k\"\nsenders = [\"@example.com\"]\nproviders = [\"p\"]\n{keys}");
        let account: AccountConfig = toml::from_str(&toml).expect("account");
        account.validate().expect_err("invalid")
    };
    assert_eq!(
        bad("alerts = true\nalert_template = \"{{ x \"").0,
        "alert_template"
    );
    assert_eq!(bad("alerts = true\n[groups]\nops = [\"0123\"]").0, "groups");
    let (key, reason) = bad("alerts = true\ngroups_file = \"/nonexistent/groups.toml\"");
    assert_eq!(key, "groups_file");
    assert!(reason.contains("/nonexistent/groups.toml"), "{reason}");
    assert_eq!(bad("[groups]\nops = [\"0601020304\"]").0, "groups");
    assert_eq!(bad("alert_template = \"x\"").0, "alert_template");
}

#[test]
fn received_time_dates_an_alert_without_date_header() {
    let book = book_with("alert_template = \"{{ date }}\"");
    let text =
        &sms(build(&book, &to(&["0601020304@sms.example.com"]), &disk_full()).expect("t"))[0].1;
    let received: Timestamp = RECEIVED.parse().expect("ts");
    assert_eq!(text, &text::paris_date(received));
    assert_eq!(text, "2026-07-01 14:05");
}
