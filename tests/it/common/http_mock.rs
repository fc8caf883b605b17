//! A mock HTTP server for the provider adapters' tests: it records every
//! request exactly as it arrived (method, path, query, headers, body bytes)
//! and answers with whatever the test's handler returns, so each adapter's
//! test can implement its document's wire format and check the bytes sent.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, e.g. `/http/1.6/sendSMS.do`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `application/x-www-form-urlencoded` pairs of the body, values as raw
    /// bytes (percent-decoded, `+` as space).
    pub fn form(&self) -> Vec<(String, Vec<u8>)> {
        parse_form(&self.body)
    }

    /// The pairs of the query string.
    pub fn query_pairs(&self) -> Vec<(String, Vec<u8>)> {
        parse_form(self.query.as_deref().unwrap_or("").as_bytes())
    }
}

/// Decodes `a=b&c=d` (percent-decoding, `+` as space) into raw bytes.
pub fn parse_form(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    fn decode(part: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < part.len() => {
                    let hex = std::str::from_utf8(&part[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        out
    }
    data.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |&b| b == b'=');
            let key = decode(it.next().unwrap_or_default());
            let value = decode(it.next().unwrap_or_default());
            (String::from_utf8_lossy(&key).into_owned(), value)
        })
        .collect()
}

/// What the mock answers.
#[derive(Debug, Clone)]
pub struct MockResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Wait this long before answering (to provoke timeouts).
    pub delay: Option<Duration>,
    /// A `Location` header, for redirects.
    pub location: Option<String>,
}

impl MockResponse {
    /// 200 with this content type and body.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> MockResponse {
        MockResponse {
            status: 200,
            content_type: Some(content_type.to_string()),
            body: body.into(),
            delay: None,
            location: None,
        }
    }

    /// A bare status with a short text body.
    pub fn status(status: u16) -> MockResponse {
        MockResponse {
            status,
            content_type: Some("text/plain".into()),
            body: format!("status {status}").into_bytes(),
            delay: None,
            location: None,
        }
    }

    /// A redirect (`status` 3xx) to `location`, with a small HTML body.
    pub fn redirect(status: u16, location: &str) -> MockResponse {
        MockResponse {
            status,
            content_type: Some("text/html".into()),
            body: b"<html>Moved</html>".to_vec(),
            delay: None,
            location: Some(location.to_string()),
        }
    }

    /// The same answer, after `delay`.
    pub fn delayed(mut self, delay: Duration) -> MockResponse {
        self.delay = Some(delay);
        self
    }
}

type Handler = dyn Fn(&Recorded) -> MockResponse + Send + Sync;

/// A running mock server on 127.0.0.1, port 0.
pub struct MockServer {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    /// Every request received, in order.
    requests: Arc<Mutex<Vec<Recorded>>>,
    /// Stops the server when dropped.
    _task: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl MockServer {
    /// Starts a server answering every request with `handler`.
    pub async fn start(
        handler: impl Fn(&Recorded) -> MockResponse + Send + Sync + 'static,
    ) -> MockServer {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = requests.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                let handler = handler.clone();
                async move {
                    let recorded = Recorded {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        query: uri.query().map(str::to_string),
                        headers: headers
                            .iter()
                            .map(|(n, v)| {
                                (
                                    n.as_str().to_string(),
                                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                )
                            })
                            .collect(),
                        body: body.to_vec(),
                    };
                    let response = handler(&recorded);
                    log.lock().unwrap().push(recorded);
                    if let Some(delay) = response.delay {
                        tokio::time::sleep(delay).await;
                    }
                    let mut builder = axum::http::Response::builder()
                        .status(StatusCode::from_u16(response.status).unwrap());
                    if let Some(ct) = &response.content_type {
                        builder = builder.header("content-type", ct);
                    }
                    if let Some(location) = &response.location {
                        builder = builder.header("location", location);
                    }
                    builder.body(axum::body::Body::from(response.body)).unwrap()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockServer {
            base: format!("http://{addr}"),
            requests,
            _task: AbortOnDrop(task),
        }
    }

    /// `base` + `path` (path starting with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until at least `n` requests have arrived.
    pub async fn wait_requests(&self, n: usize) -> Vec<Recorded> {
        for _ in 0..1000 {
            let seen = self.requests();
            if seen.len() >= n {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} requests, got {}", self.requests().len());
    }
}
