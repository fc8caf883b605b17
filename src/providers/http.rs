//! HTTP plumbing shared by the provider adapters: one client per provider
//! with its timeout, form encoding of raw bytes (sMsmode wants ISO-8859-15
//! bytes, not UTF-8), reply bodies decoded by their declared charset, and the
//! one mapping from transport failures and HTTP statuses to [`SendError`].
//!
//! Adapters keep their wire formats pure (bytes in, values out) and use this
//! module for the I/O. No error built here carries a URL: sMsmode puts its
//! access token in the query string, so a URL is a secret.

use super::{FailureKind, SendError};
use crate::codes::Code;
use std::time::Duration;

/// Default request timeout (`timeout_ms`) of every HTTP provider.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The serde default for `timeout_ms`.
pub fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// Checks a provider's `url` and `timeout_ms`; the error is (key, reason).
pub fn validate(url: &str, timeout_ms: u64) -> Result<(), (String, String)> {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        return Err(("url".into(), "must be an http:// or https:// URL".into()));
    }
    if reqwest::Url::parse(url).is_err() {
        return Err(("url".into(), "is not a valid URL".into()));
    }
    if timeout_ms == 0 {
        return Err(("timeout_ms".into(), "must be at least 1".into()));
    }
    Ok(())
}

/// One provider's HTTP client: its own timeout, and its `rate_limit`
/// (requests per second) applied to every request, however many requests
/// one batch of SMS needs.
#[derive(Clone)]
pub struct Client {
    /// The connection pool.
    inner: reqwest::Client,
    /// Waited on before each request, when the provider has a `rate_limit`.
    limiter: Option<std::sync::Arc<governor::DefaultDirectRateLimiter>>,
    /// The provider's credentials in every form they are sent in, longest
    /// first: masked in an error page's text before it is cut into an
    /// error detail (a cut could leave part of a secret unrecognisable).
    secrets: std::sync::Arc<Vec<String>>,
}

impl Client {
    /// The same client, masking these forms of the provider's credentials
    /// in the error pages it quotes.
    pub fn with_secrets(mut self, forms: impl IntoIterator<Item = String>) -> Client {
        let mut forms: Vec<String> = forms.into_iter().filter(|f| !f.is_empty()).collect();
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        forms.dedup();
        self.secrets = std::sync::Arc::new(forms);
        self
    }

    /// The error with every form of the provider's credentials replaced by
    /// `***` in its detail: an answer or an error page may echo what it
    /// was sent.
    pub fn scrub(&self, mut error: SendError) -> SendError {
        for secret in self.secrets.iter() {
            if error.detail.contains(secret.as_str()) {
                error.detail = error.detail.replace(secret.as_str(), "***");
            }
        }
        error
    }

    /// Waits for the rate limit, if any, then hands out the pool.
    async fn ready(&self) -> &reqwest::Client {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
        &self.inner
    }
}

/// A client for one provider: `timeout_ms` bounds each whole request
/// (connect, send, answer), connecting alone is bounded too, and at most
/// `rate_limit` requests a second are sent.
pub fn client(timeout_ms: u64, rate_limit: Option<std::num::NonZeroU32>) -> Result<Client, String> {
    let limiter = rate_limit.map(|n| {
        std::sync::Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
            n,
        )))
    });
    Ok(Client {
        inner: reqwest_client(timeout_ms)?,
        limiter,
        secrets: Default::default(),
    })
}

fn reqwest_client(timeout_ms: u64) -> Result<reqwest::Client, String> {
    // reqwest is built without a default crypto provider (its default pulls
    // aws-lc); ring is already in the tree through lettre. Installing it
    // twice is harmless: the second call just reports the first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let timeout = Duration::from_millis(timeout_ms);
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        // Never follow a redirect: reqwest would turn a redirected POST into
        // a body-less GET, which a provider may read as an empty request (or
        // we would send a secret to another host). A 3xx is sorted by
        // `check_status` like any other unexpected status.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mail2sms/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))
}

/// `base` + `path`, with exactly one `/` between them: `url` in the config
/// may be given with or without its trailing slash.
pub fn endpoint(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        format!("{base}/")
    } else {
        format!("{base}/{path}")
    }
}

/// `application/x-www-form-urlencoded` of raw byte values (WHATWG rules:
/// ASCII letters, digits and `*-._` as they are, space as `+`, every other
/// byte `%XX` in upper case). Values are bytes so that an adapter can send
/// ISO-8859-15 text as its document requires.
pub fn form_encode(pairs: &[(&str, &[u8])]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode_into(&mut out, key.as_bytes());
        out.push('=');
        percent_encode_into(&mut out, value);
    }
    out
}

fn percent_encode_into(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
}

/// A provider's answer, whatever its status (see [`check_status`]).
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `Location` header, if any (a redirect's target, which is never
    /// followed).
    pub location: Option<String>,
    /// The body as received.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text, decoded as [`decode_body`] says.
    pub fn text(&self) -> String {
        decode_body(self.content_type.as_deref(), &self.body)
    }
}

/// POSTs `body` with `content_type`; transport failures become transient
/// errors, and statuses are sorted by [`check_status`].
pub async fn post(
    client: &Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Reply, SendError> {
    let request = client
        .ready()
        .await
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    execute(request, &client.secrets).await
}

/// GETs `url` (which may carry credentials in its query: never logged).
pub async fn get(client: &Client, url: &str) -> Result<Reply, SendError> {
    execute(client.ready().await.get(url), &client.secrets).await
}

async fn execute(request: reqwest::RequestBuilder, secrets: &[String]) -> Result<Reply, SendError> {
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = response.bytes().await.map_err(transport_error)?.to_vec();
    let reply = Reply {
        status,
        content_type,
        location,
        body,
    };
    check_status_masking(&reply, secrets)?;
    Ok(reply)
}

/// A failure to get an answer at all: always transient (the provider may
/// be back soon). The URL is stripped, since it may hold a secret.
pub fn transport_error(e: reqwest::Error) -> SendError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "answer cut short"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut detail = format!("{what}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    SendError::transient(detail)
}

/// Sorts an HTTP status: 2xx is an answer for the adapter to read; 408,
/// 425, 429 and 5xx are transient (retry, then fail over); 401 and 403
/// mean our credentials are refused (next provider, code 3); any other
/// status means this provider cannot take our requests as configured
/// (wrong `url`, say): next provider, code 999. Redirects are never
/// followed, so a 3xx lands here too; its detail names the `Location`
/// (without its query string, which could hold a secret) so that `url`
/// can be corrected.
pub fn check_status(reply: &Reply) -> Result<(), SendError> {
    check_status_masking(reply, &[])
}

/// [`check_status`], with `secrets` masked in the quoted body before it is
/// cut to a snippet.
pub fn check_status_masking(reply: &Reply, secrets: &[String]) -> Result<(), SendError> {
    let status = reply.status;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut text = reply.text();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    let snippet = snippet(&text);
    let redirect = match &reply.location {
        Some(location) if !location.trim().is_empty() => {
            format!(
                " (redirected to {}, not followed)",
                redirect_target(location)
            )
        }
        _ => String::new(),
    };
    let detail = format!("HTTP {status} {reason}{redirect}{snippet}");
    Err(match status {
        408 | 425 | 429 | 500..=599 => SendError::transient(detail),
        401 | 403 => SendError {
            kind: FailureKind::ProviderUnusable,
            code: Code::BAD_CREDENTIALS,
            detail,
        },
        _ => SendError {
            kind: FailureKind::ProviderUnusable,
            code: Code::INTERNAL,
            detail,
        },
    })
}

/// A `Location` value fit for an error detail: one line, at most 200
/// characters, without its query string or fragment (a provider that
/// echoes our URL would echo a token in it) nor user info.
fn redirect_target(location: &str) -> String {
    let mut target = location.trim();
    let mut cut = false;
    if let Some(at) = target.find(['?', '#']) {
        target = &target[..at];
        cut = true;
    }
    // `scheme://user:pass@host/…` or `//user:pass@host/…`: drop `user:pass@`.
    let split = target
        .split_once("://")
        .map(|(scheme, rest)| (format!("{scheme}://"), rest))
        .or_else(|| {
            target
                .strip_prefix("//")
                .map(|rest| ("//".to_string(), rest))
        });
    let mut shown = match split {
        Some((prefix, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{prefix}{}", &rest[at + 1..]),
                None => target.to_owned(),
            }
        }
        None => target.to_owned(),
    };
    shown = shown
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if cut {
        shown.push_str("?…");
    }
    shown
}

/// The start of a body for an error message: one line, at most 200 chars.
pub fn snippet(text: &str) -> String {
    let line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

/// Decodes a reply body: the charset of `Content-Type` if it names one,
/// else the `encoding` of an XML declaration, else UTF-8 if the bytes are
/// valid UTF-8, else Windows-1252 (a superset of ISO-8859-1 that maps every
/// byte). Providers of this age often send Latin-1 without saying so.
pub fn decode_body(content_type: Option<&str>, body: &[u8]) -> String {
    let label = content_type
        .and_then(charset_param)
        .or_else(|| xml_declared_encoding(body));
    if let Some(encoding) = label.and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes())) {
        let (text, _, _) = encoding.decode(body);
        return text.into_owned();
    }
    match std::str::from_utf8(body) {
        Ok(text) => text.trim_start_matches('\u{feff}').to_owned(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(body).0.into_owned(),
    }
}

/// `charset=...` of a `Content-Type` value.
fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// `encoding="..."` of an `<?xml ...?>` declaration at the start of `body`.
fn xml_declared_encoding(body: &[u8]) -> Option<String> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = body.get(start..)?;
    if !rest.starts_with(b"<?xml") {
        return None;
    }
    let end = rest.iter().position(|&b| b == b'>')?;
    let decl = std::str::from_utf8(&rest[..end]).ok()?;
    let at = decl.find("encoding")?;
    let after = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let after = after.trim_start();
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &after[1..];
    Some(value[..value.find(quote)?].to_owned())
}

/// An E.164 number without its `+` (`+33601020304` → `33601020304`): the
/// international form smsfactor, SMSECO and sMsmode take.
pub fn digits(e164: &str) -> &str {
    e164.strip_prefix('+').unwrap_or(e164)
}

/// Every SMS of a batch gets the same error (the whole request failed).
pub fn all_failed<T>(count: usize, error: &SendError) -> Vec<Result<T, SendError>> {
    (0..count).map(|_| Err(error.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_follows_the_smsmode_table() {
        // The sMsmode document's table of characters and their encoding.
        let cases: &[(&[u8], &str)] = &[
            (b"\n", "%0A"),
            (b"\r", "%0D"),
            (b" ", "+"),
            (b"!", "%21"),
            (b"*", "*"),
            (b"-", "-"),
            (b".", "."),
            (b"/", "%2F"),
            (b"~", "%7E"),
            (b"@", "%40"),
            (&[0xA4], "%A4"),
            (&[0xE9], "%E9"),
            (b"Aa0", "Aa0"),
        ];
        for (raw, encoded) in cases {
            assert_eq!(
                form_encode(&[("m", raw)]),
                format!("m={encoded}"),
                "{raw:?}"
            );
        }
        assert_eq!(
            form_encode(&[
                ("accessToken", b"Ab1CD2efg3Hi"),
                ("message", b"Bonjour Maman")
            ]),
            "accessToken=Ab1CD2efg3Hi&message=Bonjour+Maman"
        );
    }

    #[test]
    fn endpoint_joins_with_one_slash() {
        for base in [
            "https://api.smsmode.com/http/1.6",
            "https://api.smsmode.com/http/1.6/",
        ] {
            assert_eq!(
                endpoint(base, "sendSMS.do"),
                "https://api.smsmode.com/http/1.6/sendSMS.do"
            );
        }
        assert_eq!(endpoint("http://h/api2", ""), "http://h/api2/");
    }

    #[test]
    fn bodies_are_decoded_by_their_declared_charset() {
        let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r>cr\xe9dit</r>";
        assert!(decode_body(None, latin1).contains("crédit"));
        assert!(decode_body(Some("text/xml; charset=iso-8859-1"), b"cr\xe9dit").contains("crédit"));
        assert_eq!(
            decode_body(Some("text/plain"), "crédit".as_bytes()),
            "crédit"
        );
        assert_eq!(decode_body(None, b"cr\xe9dit"), "crédit");
        assert_eq!(
            decode_body(Some("text/plain; charset=\"UTF-8\""), "é".as_bytes()),
            "é"
        );
    }

    fn reply(status: u16) -> Reply {
        Reply {
            status,
            content_type: None,
            location: None,
            body: b"oops".to_vec(),
        }
    }

    #[test]
    fn redirects_are_unusable_and_name_their_target() {
        let mut r = reply(301);
        r.location = Some("https://user:pw@api.example/v2/sendSMS.do?accessToken=S3cr3t#x".into());
        let e = check_status(&r).unwrap_err();
        assert_eq!(
            (e.kind, e.code),
            (FailureKind::ProviderUnusable, Code::INTERNAL)
        );
        assert_eq!(
            e.detail,
            "HTTP 301 Moved Permanently (redirected to https://api.example/v2/sendSMS.do?…, not followed): oops"
        );
        r.location = Some("//user:pw@other.example/x".into());
        let detail = check_status(&r).unwrap_err().detail;
        assert!(
            detail.contains("(redirected to //other.example/x, not followed)"),
            "{detail}"
        );
        r.location = Some("/elsewhere/".into());
        assert!(
            check_status(&r)
                .unwrap_err()
                .detail
                .contains("(redirected to /elsewhere/, not followed)")
        );
        r.location = None;
        assert_eq!(
            check_status(&r).unwrap_err().detail,
            "HTTP 301 Moved Permanently: oops"
        );
    }

    #[test]
    fn statuses_are_sorted() {
        assert!(check_status(&reply(200)).is_ok());
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(check_status(&reply(s)).unwrap_err().is_transient(), "{s}");
        }
        let e = check_status(&reply(401)).unwrap_err();
        assert_eq!(
            (e.kind, e.code),
            (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
        );
        let e = check_status(&reply(404)).unwrap_err();
        assert_eq!(
            (e.kind, e.code),
            (FailureKind::ProviderUnusable, Code::INTERNAL)
        );
        assert_eq!(e.detail, "HTTP 404 Not Found: oops");
    }

    #[test]
    fn secrets_are_masked_before_the_body_is_cut() {
        // The password straddles the 200-character cut.
        let body = format!("{}hunter2-secret and more", "x".repeat(195));
        let reply = Reply {
            status: 500,
            content_type: None,
            location: None,
            body: body.into_bytes(),
        };
        let plain = check_status(&reply).unwrap_err().detail;
        assert!(plain.contains("hunte"), "{plain}");
        let masked = check_status_masking(&reply, &["hunter2-secret".to_string()])
            .unwrap_err()
            .detail;
        assert!(!masked.contains("hunte"), "{masked}");
        assert!(masked.contains("***"), "{masked}");
    }

    #[test]
    fn urls_are_validated() {
        assert!(validate("https://api.smsmode.com/http/1.6/", 10).is_ok());
        assert_eq!(validate("ftp://x/", 10).unwrap_err().0, "url");
        assert_eq!(
            validate("https://x.example/", 0).unwrap_err().0,
            "timeout_ms"
        );
    }
}
