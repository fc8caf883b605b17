//! Bodies as real mail clients and corporate MTAs send them, end to end
//! through SMTP: each must give exactly the SMS text the sender meant.

use crate::common::*;

/// Sends `raw` and returns the one SMS text it produced.
async fn sms_text(raw: &[u8]) -> String {
    let app = TestApp::spawn().await;
    let response = app.send("ops@masociete.com", raw).await.expect("accepted");
    assert!(response.is_positive());
    let lines = app.wait_outbox(1).await;
    assert_eq!(lines.len(), 1);
    lines[0]["text"].as_str().unwrap().to_string()
}

fn mail(headers: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "From: ops@masociete.com\r\nTo: sms@sms.example.com\r\nSubject: alert\r\nMIME-Version: 1.0\r\n{headers}\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

const HEAD: &str = "<envoi>\r\n<keyid>a296464ce012b8ab710a</keyid>\r\n<num>0601020304</num>\r\n";
const TAIL: &str = "<emailId>b-1</emailId>\r\n</envoi>\r\n";

#[tokio::test]
async fn quoted_printable_with_soft_breaks_inside_sms() {
    let body = format!(
        "{HEAD}<sms>L'=C3=A9t=C3=A9 est fini! Super promo -10% =C3=A0 partir de 50=E2=82=AC d'ach=\r\nat !!! Une phrase assez longue pour que le client la coupe en plusie=\r\nurs lignes.</sms>\r\n{TAIL}"
    );
    let text = sms_text(&mail(
        "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
        body.as_bytes(),
    ))
    .await;
    assert_eq!(
        text,
        "L'été est fini! Super promo -10% à partir de 50€ d'achat !!! Une phrase assez longue pour que le client la coupe en plusieurs lignes."
    );
}

#[tokio::test]
async fn iso_8859_15_body_with_euro_sign() {
    let mut body = HEAD.as_bytes().to_vec();
    body.extend_from_slice(b"<sms>Promo \xe0 50\xa4 !</sms>\r\n"); // 0xA4 is € in Latin-9
    body.extend_from_slice(TAIL.as_bytes());
    let text = sms_text(&mail(
        "Content-Type: text/plain; charset=ISO-8859-15\r\nContent-Transfer-Encoding: 8bit\r\n",
        &body,
    ))
    .await;
    assert_eq!(text, "Promo à 50€ !");
}

#[tokio::test]
async fn windows_1252_body_without_charset() {
    let mut body = HEAD.as_bytes().to_vec();
    body.extend_from_slice(b"<sms>\xc9t\xe9 \x80 \x93ok\x94</sms>\r\n");
    body.extend_from_slice(TAIL.as_bytes());
    let text = sms_text(&mail("Content-Transfer-Encoding: 8bit\r\n", &body)).await;
    assert_eq!(text, "Été € “ok”");
}

#[tokio::test]
async fn base64_body_with_lf_line_ends() {
    let plain = format!("{HEAD}<sms>Serveur web01 DOWN</sms>\n{TAIL}").replace("\r\n", "\n");
    let encoded = base64_lines(plain.as_bytes());
    let text = sms_text(&mail(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n",
        encoded.as_bytes(),
    ))
    .await;
    assert_eq!(text, "Serveur web01 DOWN");
}

#[tokio::test]
async fn multipart_with_signature_and_corporate_disclaimer() {
    let body = format!(
        "--zz\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nBonjour,\r\n\r\n{HEAD}<sms>Alerte: disque plein & <50% libre</sms>\r\n{TAIL}\r\n-- \r\nJean Dupont <jean@masociete.com>\r\n\r\n--zz\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<p>ignored html copy</p>\r\n--zz--\r\nCe message et ses pièces jointes sont confidentiels. <envoi> n'est pas une balise ici.\r\n"
    );
    let text = sms_text(&mail(
        "Content-Type: multipart/alternative; boundary=\"zz\"\r\n",
        body.as_bytes(),
    ))
    .await;
    assert_eq!(text, "Alerte: disque plein & <50% libre");
}

#[tokio::test]
async fn entities_and_the_line_break_character() {
    let body = format!("{HEAD}<sms>Caf&eacute; &amp; th&#233; &lt;3ÖLigne 2</sms>\r\n{TAIL}");
    let text = sms_text(&mail(
        "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n",
        body.as_bytes(),
    ))
    .await;
    assert_eq!(text, "Café & thé <3\nLigne 2");
}

#[tokio::test]
async fn html_only_mail_is_read_from_its_text_rendering() {
    let body = "<html><body><p>&lt;envoi&gt;<br>&lt;keyid&gt;a296464ce012b8ab710a&lt;/keyid&gt;<br>&lt;num&gt;0601020304&lt;/num&gt;<br>&lt;sms&gt;Depuis Outlook&lt;/sms&gt;<br>&lt;emailId&gt;h-1&lt;/emailId&gt;<br>&lt;/envoi&gt;</p></body></html>\r\n";
    let text = sms_text(&mail(
        "Content-Type: text/html; charset=UTF-8\r\n",
        body.as_bytes(),
    ))
    .await;
    assert_eq!(text, "Depuis Outlook");
}

#[tokio::test]
async fn csv_attachments_from_a_spreadsheet_in_windows_1252() {
    let app = TestApp::spawn().await;
    let envoi = "<envoi>\r\n<keyid>a296464ce012b8ab710a</keyid>\r\n<emailId>csv-1252</emailId>\r\n</envoi>\r\n";
    let mobiles =
        base64_lines(b"0601020304;;Ren\xe9e;;12\x80\r\n06 01 02 03 05;;Jos\xe9;;7\x80\r\n");
    let message = base64_lines(b"\xef\xbb\xbfBonjour [1], vous devez [2] (r\xc3\xa9f [3])\r\n");
    let raw = multipart_email(
        envoi,
        &[
            (
                "mobiles.csv",
                "application/vnd.ms-excel",
                Some("base64"),
                &mobiles,
            ),
            ("message.csv", "text/csv", Some("base64"), &message),
        ],
    );
    app.send("ops@masociete.com", &raw).await.expect("accepted");
    let lines = app.wait_outbox(2).await;
    assert_eq!(
        text_for(&lines, "+33601020304"),
        "Bonjour Renée, vous devez 12€ (réf )"
    );
    assert_eq!(
        text_for(&lines, "+33601020305"),
        "Bonjour José, vous devez 7€ (réf )"
    );
}

/// Issue 8: a NUL byte in `<sms>` reached the provider. Control characters,
/// raw or as references, are removed before the text is counted, checked or
/// stored; line breaks stay.
#[tokio::test]
async fn control_characters_never_reach_the_provider() {
    let mut body = HEAD.as_bytes().to_vec();
    body.extend_from_slice(b"<sms>Serveur\x00 web01\x07 DOWN&#1;\x1b[2J&Ouml;fin\tok</sms>\r\n");
    body.extend_from_slice(TAIL.as_bytes());
    let text = sms_text(&mail(
        "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n",
        &body,
    ))
    .await;
    assert_eq!(text, "Serveur web01 DOWN[2J\nfin ok");
}

/// Base64 in 76-character lines, written here independently of the daemon.
fn base64_lines(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}
