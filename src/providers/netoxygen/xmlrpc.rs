//! Just enough XML-RPC for the NetOxygen gateway, without I/O: a value
//! model, a `methodCall` writer, a tolerant `methodResponse` reader, and
//! base64.
//!
//! Writing is done by hand so that the bytes are exactly known (and tested):
//! an `<?xml version="1.0" encoding="UTF-8"?>` declaration, then the call on
//! one line, every value with an explicit type element, empty elements
//! written out in full (`<string></string>`, which every XML-RPC server
//! reads; some refuse `<string/>`).
//!
//! Reading is deliberately lenient, because gateways of this age are PHP or
//! Perl servers with their own habits: a bare `<value>text</value>` is a
//! string, `int`/`i4`/`i8` are integers, `ex:` extension prefixes are
//! ignored, base64 may be wrapped over several lines, booleans may be
//! `true`/`false`, and `<nil/>` is accepted. The reader takes text that the
//! caller already decoded by its declared charset
//! ([`crate::providers::http::Reply::text`]), so an `encoding="ISO-8859-1"`
//! declaration is fine: it is read, and ignored.

use crate::xml;
use quick_xml::Reader;
use quick_xml::events::Event;

/// Nesting deeper than this is refused (an answer of ours is four levels of
/// arrays at most): a hostile body cannot make the reader recurse forever.
const MAX_DEPTH: usize = 64;

/// One XML-RPC value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `<int>`, `<i4>` or `<i8>`.
    Int(i64),
    /// `<boolean>`: `1`/`0` (or `true`/`false` when read).
    Bool(bool),
    /// `<string>`, or a bare `<value>text</value>`.
    Str(String),
    /// `<double>`.
    Double(f64),
    /// `<dateTime.iso8601>`, kept as written.
    DateTime(String),
    /// `<base64>`: the decoded bytes.
    Base64(Vec<u8>),
    /// `<struct>`: members in document order.
    Struct(Vec<(String, Value)>),
    /// `<array>`.
    Array(Vec<Value>),
    /// `<nil/>` (an extension some servers use for "nothing").
    Nil,
}

impl Value {
    /// A boolean, however the server typed it: `boolean`, an integer 0/1,
    /// or a string `0`/`1`/`true`/`false` (PHP servers often answer
    /// `TRUE` as `<int>1</int>` or `<string>1</string>`).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Int(0) => Some(false),
            Value::Int(1) => Some(true),
            Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "1" | "true" => Some(true),
                "0" | "false" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// An integer, from an `int` or a string of digits (or an integral
    /// `double`).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Str(s) => s.trim().parse().ok(),
            Value::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
            _ => None,
        }
    }

    /// A number, from an `int`, a `double` or a numeric string.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Double(d) => Some(*d),
            Value::Str(s) => s.trim().parse::<f64>().ok().filter(|d| d.is_finite()),
            _ => None,
        }
    }

    /// Scalar text: a string as is, an integer or double in decimal, base64
    /// bytes as UTF-8 (lossy). `None` for booleans, structs, arrays, nil.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Double(d) => Some(d.to_string()),
            Value::DateTime(s) => Some(s.clone()),
            Value::Base64(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// A struct member by name.
    pub fn member(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(members) => members.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short, one-line rendering for error details (never the whole
    /// answer: at most 200 characters).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        summarise(self, &mut out);
        if out.chars().count() > 200 {
            out = out.chars().take(200).collect::<String>() + "…";
        }
        out
    }
}

fn summarise(value: &Value, out: &mut String) {
    if out.len() > 400 {
        return;
    }
    match value {
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
        Value::Str(s) | Value::DateTime(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        Value::Double(d) => out.push_str(&d.to_string()),
        Value::Base64(b) => {
            out.push_str("base64:\"");
            out.push_str(&String::from_utf8_lossy(b));
            out.push('"');
        }
        Value::Struct(members) => {
            out.push('{');
            for (i, (name, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(name);
                out.push_str(": ");
                summarise(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                summarise(v, out);
            }
            out.push(']');
        }
        Value::Nil => out.push_str("nil"),
    }
}

/// An XML-RPC `<fault>`: the server refused the call as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// `faultCode` (0 if the server gave none or not a number).
    pub code: i64,
    /// `faultString`, the server's own words.
    pub string: String,
}

/// A decoded `methodResponse`.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// `<params><param><value>…`: the call's return value.
    Success(Value),
    /// `<fault>…`.
    Fault(Fault),
}

/// Why an answer is not a readable `methodResponse`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn bad(what: impl Into<String>) -> ParseError {
    ParseError(what.into())
}

/// Writes a `methodCall` of `method` with `params`, as UTF-8 bytes.
pub fn method_call(method: &str, params: &[Value]) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodCall><methodName>");
    out.push_str(&escape(method));
    out.push_str("</methodName><params>");
    for param in params {
        out.push_str("<param>");
        write_value(&mut out, param);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>\n");
    out.into_bytes()
}

/// How this writer escapes a `<string>` or a name: `&`, `<`, `>`, and CR
/// as `&#13;`; quotes left as they are; every other character kept (the
/// strings are credentials and method names, which must go as given).
pub(crate) const STYLE: xml::Style = xml::Style {
    quotes: false,
    cr_reference: true,
    forbidden: xml::Forbidden::Keep,
};

/// `text` escaped as this writer sends it ([`STYLE`]).
fn escape(text: &str) -> String {
    xml::escape(text, STYLE)
}

fn write_value(out: &mut String, value: &Value) {
    out.push_str("<value>");
    match value {
        Value::Int(i) if i32::try_from(*i).is_ok() => {
            out.push_str(&format!("<int>{i}</int>"));
        }
        Value::Int(i) => out.push_str(&format!("<i8>{i}</i8>")),
        Value::Bool(b) => out.push_str(if *b {
            "<boolean>1</boolean>"
        } else {
            "<boolean>0</boolean>"
        }),
        Value::Str(s) => {
            out.push_str("<string>");
            out.push_str(&escape(s));
            out.push_str("</string>");
        }
        Value::Double(d) => out.push_str(&format!("<double>{d}</double>")),
        Value::DateTime(s) => {
            out.push_str("<dateTime.iso8601>");
            out.push_str(&escape(s));
            out.push_str("</dateTime.iso8601>");
        }
        Value::Base64(bytes) => {
            out.push_str("<base64>");
            out.push_str(&base64_encode(bytes));
            out.push_str("</base64>");
        }
        Value::Struct(members) => {
            out.push_str("<struct>");
            for (name, v) in members {
                out.push_str("<member><name>");
                out.push_str(&escape(name));
                out.push_str("</name>");
                write_value(out, v);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for v in items {
                write_value(out, v);
            }
            out.push_str("</data></array>");
        }
        Value::Nil => out.push_str("<nil></nil>"),
    }
    out.push_str("</value>");
}

/// One element of the parsed document.
#[derive(Debug, Default)]
struct Element {
    /// The local name (any `prefix:` dropped).
    name: String,
    /// Child elements and text, in order.
    children: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name)
    }

    fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }
}

/// Parses `text` into an element tree (comments, processing instructions
/// and the declaration skipped; entities and CDATA resolved).
fn parse_tree(text: &str) -> Result<Element, ParseError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| bad(format!("not well-formed XML: {e}")))?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(bad("XML nested too deep"));
                }
                stack.push(Element {
                    name: start.local_name().as_ref().to_owned(),
                    children: Vec::new(),
                });
            }
            Event::Empty(start) => {
                let element = Element {
                    name: start.local_name().as_ref().to_owned(),
                    children: Vec::new(),
                };
                attach(&mut stack, &mut root, element)?;
            }
            Event::End(_) => {
                let element = stack.pop().ok_or_else(|| bad("unbalanced end tag"))?;
                attach(&mut stack, &mut root, element)?;
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content()),
            Event::CData(c) => push_text(&mut stack, &c.into_inner()),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_xml_entity(&r)
                        .ok_or_else(|| bad(format!("unknown entity &{};", &*r)))?
                        .to_owned(),
                    Err(e) => return Err(bad(format!("bad character reference: {e}"))),
                };
                push_text(&mut stack, &resolved);
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(bad("XML cut short"));
    }
    root.ok_or_else(|| bad("no XML element"))
}

fn attach(
    stack: &mut [Element],
    root: &mut Option<Element>,
    element: Element,
) -> Result<(), ParseError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(element)),
        None if root.is_none() => *root = Some(element),
        None => return Err(bad("more than one root element")),
    }
    Ok(())
}

fn push_text(stack: &mut [Element], text: &str) {
    // Text outside the root element (whitespace around it) is dropped.
    if let Some(parent) = stack.last_mut() {
        if let Some(Node::Text(last)) = parent.children.last_mut() {
            last.push_str(text);
        } else {
            parent.children.push(Node::Text(text.to_owned()));
        }
    }
}

/// Reads a `methodResponse`: its value, or its fault.
pub fn parse_response(text: &str) -> Result<Response, ParseError> {
    let root = parse_tree(text)?;
    if root.name != "methodResponse" {
        return Err(bad(format!("<{}> is not a methodResponse", root.name)));
    }
    if let Some(fault) = root.child("fault") {
        let value = fault
            .child("value")
            .map(read_value)
            .transpose()?
            .unwrap_or(Value::Nil);
        let code = value
            .member("faultCode")
            .and_then(Value::as_int)
            .unwrap_or(0);
        let string = value
            .member("faultString")
            .and_then(Value::as_text)
            .unwrap_or_else(|| value.summary());
        return Ok(Response::Fault(Fault { code, string }));
    }
    let value = root
        .child("params")
        .and_then(|p| p.child("param"))
        .and_then(|p| p.child("value"))
        .ok_or_else(|| bad("methodResponse without a value or a fault"))?;
    Ok(Response::Success(read_value(value)?))
}

/// Reads a `methodCall`: its method name and parameters (for tests and
/// tools that need to look at a request the way a server would).
pub fn parse_call(text: &str) -> Result<(String, Vec<Value>), ParseError> {
    let root = parse_tree(text)?;
    if root.name != "methodCall" {
        return Err(bad(format!("<{}> is not a methodCall", root.name)));
    }
    let name = root
        .child("methodName")
        .map(|n| n.text().trim().to_owned())
        .ok_or_else(|| bad("methodCall without a methodName"))?;
    let params = match root.child("params") {
        Some(params) => params
            .elements()
            .filter(|p| p.name == "param")
            .map(|p| {
                p.child("value")
                    .ok_or_else(|| bad("<param> without a value"))
                    .and_then(read_value)
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    Ok((name, params))
}

/// Reads one `<value>` element.
fn read_value(value: &Element) -> Result<Value, ParseError> {
    let mut typed = value.elements();
    let Some(inner) = typed.next() else {
        // `<value>text</value>`: a string, whitespace kept.
        return Ok(Value::Str(value.text()));
    };
    if typed.next().is_some() {
        return Err(bad("<value> with more than one type"));
    }
    let text = inner.text();
    let number_error = || bad(format!("<{}> is not a number: {text:?}", inner.name));
    Ok(match inner.name.as_str() {
        "int" | "i4" | "i8" | "i2" | "i1" | "biginteger" => {
            Value::Int(text.trim().parse().map_err(|_| number_error())?)
        }
        "boolean" => match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" => Value::Bool(true),
            "0" | "false" => Value::Bool(false),
            _ => return Err(bad(format!("<boolean> is not 0 or 1: {text:?}"))),
        },
        "string" => Value::Str(text),
        "double" | "float" | "bigdecimal" => {
            Value::Double(text.trim().parse().map_err(|_| number_error())?)
        }
        "dateTime.iso8601" => Value::DateTime(text.trim().to_owned()),
        "base64" => Value::Base64(
            base64_decode(&text).ok_or_else(|| bad(format!("<base64> is not base64: {text:?}")))?,
        ),
        "struct" => {
            let mut members = Vec::new();
            for member in inner.elements().filter(|m| m.name == "member") {
                let name = member
                    .child("name")
                    .map(Element::text)
                    .ok_or_else(|| bad("struct <member> without a name"))?;
                let value = member
                    .child("value")
                    .map(read_value)
                    .transpose()?
                    .unwrap_or(Value::Nil);
                members.push((name, value));
            }
            Value::Struct(members)
        }
        "array" => {
            // `<array><data>…` as the specification says; a server that
            // leaves `<data>` out is read the same.
            let data = inner.child("data").unwrap_or(inner);
            Value::Array(
                data.elements()
                    .filter(|v| v.name == "value")
                    .map(read_value)
                    .collect::<Result<_, _>>()?,
            )
        }
        "nil" | "null" => Value::Nil,
        other => return Err(bad(format!("unknown XML-RPC type <{other}>"))),
    })
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648 alphabet, `=` padding, no line breaks).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| BASE64[((n >> shift) & 63) as usize] as char;
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

/// Decodes base64, ignoring whitespace (servers wrap it at 76 columns) and
/// accepting missing padding; `None` if it is not base64.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut padding = false;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            c if c.is_ascii_whitespace() => continue,
            _ => return None,
        };
        if padding {
            // Data after padding.
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover sextet cannot be a whole byte.
    (bits < 6).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_rfc_4648() {
        // RFC 4648 section 10 test vectors.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).unwrap(), plain.as_bytes());
        }
        let text = "Été à 50€ ça coûte";
        assert_eq!(
            base64_encode(text.as_bytes()),
            "w4l0w6kgw6AgNTDigqwgw6dhIGNvw7t0ZQ=="
        );
        // Wrapped over lines, unpadded.
        assert_eq!(
            base64_decode("w4l0w6kgw6AgNTDigqwg\r\n w6dhIGNvw7t0ZQ").unwrap(),
            text.as_bytes()
        );
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("Zg==Zg"), None);
        assert_eq!(base64_decode("Z!=="), None);
    }

    #[test]
    fn a_method_call_is_written_exactly() {
        let body = method_call(
            "send_message",
            &[
                Value::Str("a<b&c>".into()),
                Value::Base64(b"41791234567".to_vec()),
                Value::Array(vec![Value::Int(1), Value::Bool(false)]),
                Value::Str(String::new()),
            ],
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodCall><methodName>send_message</methodName><params>\
             <param><value><string>a&lt;b&amp;c&gt;</string></value></param>\
             <param><value><base64>NDE3OTEyMzQ1Njc=</base64></value></param>\
             <param><value><array><data><value><int>1</int></value><value><boolean>0</boolean></value></data></array></value></param>\
             <param><value><string></string></value></param>\
             </params></methodCall>\n"
        );
    }

    #[test]
    fn written_calls_read_back_with_dxr_and_with_our_reader() {
        let params = vec![
            Value::Str("ü & <x>\r\n".into()),
            Value::Int(-7),
            Value::Int(1 << 40),
            Value::Double(2.5),
            Value::Base64(vec![0, 255, 10]),
            Value::Struct(vec![("k".into(), Value::Bool(true))]),
            Value::Array(vec![Value::Str(String::new())]),
        ];
        let body = method_call("m", &params);
        let text = String::from_utf8(body).unwrap();
        assert_eq!(parse_call(&text).unwrap(), ("m".to_string(), params));
        // An independent reader (dxr) agrees on the part it supports
        // (dxr is built without i8).
        let small = method_call(
            "m",
            &[
                Value::Str("ü & <x>".into()),
                Value::Base64(vec![0, 255, 10]),
            ],
        );
        let call = dxr::MethodCall::from_xml(std::str::from_utf8(&small).unwrap()).unwrap();
        assert_eq!(call.name, "m");
        assert_eq!(
            call.params,
            vec![
                dxr::Value::String("ü & <x>".into()),
                dxr::Value::Base64(vec![0, 255, 10])
            ]
        );
    }

    #[test]
    fn responses_are_read_leniently() {
        let text = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n\
            <methodResponse>\n <params>\n  <param>\n   <value><array><data>\n\
            <value>bare é</value>\n\
            <value><i4> 42 </i4></value>\n\
            <value><int>-3</int></value>\n\
            <value><ex:i8 xmlns:ex=\"http://ws.apache.org/xmlrpc/namespaces/extensions\">9000000000</ex:i8></value>\n\
            <value><boolean>true</boolean></value>\n\
            <value><string>a &amp; b &#233; &#x20AC; <![CDATA[<raw>]]></string></value>\n\
            <value><double>212.5</double></value>\n\
            <value><base64>w6k=\n</base64></value>\n\
            <value><struct><member><name>n</name><value><nil/></value></member></struct></value>\n\
            <value></value>\n\
            <value><string/></value>\n\
            <!-- a comment -->\n\
            </data></array></value>\n  </param>\n </params>\n</methodResponse>\n";
        let Response::Success(Value::Array(items)) = parse_response(text).unwrap() else {
            panic!("not an array");
        };
        assert_eq!(
            items,
            vec![
                Value::Str("bare é".into()),
                Value::Int(42),
                Value::Int(-3),
                Value::Int(9_000_000_000),
                Value::Bool(true),
                Value::Str("a & b é € <raw>".into()),
                Value::Double(212.5),
                Value::Base64("é".as_bytes().to_vec()),
                Value::Struct(vec![("n".into(), Value::Nil)]),
                Value::Str(String::new()),
                Value::Str(String::new()),
            ]
        );
    }

    #[test]
    fn faults_are_read() {
        let text = "<?xml version=\"1.0\"?><methodResponse><fault><value><struct>\
            <member><name>faultCode</name><value><int>4</int></value></member>\
            <member><name>faultString</name><value><string>Too many parameters.</string></value></member>\
            </struct></value></fault></methodResponse>";
        assert_eq!(
            parse_response(text).unwrap(),
            Response::Fault(Fault {
                code: 4,
                string: "Too many parameters.".into()
            })
        );
        // A string code and a bare string.
        let text = "<methodResponse><fault><value><struct>\
            <member><name>faultString</name><value>Login failed</value></member>\
            <member><name>faultCode</name><value><string>801</string></value></member>\
            </struct></value></fault></methodResponse>";
        assert_eq!(
            parse_response(text).unwrap(),
            Response::Fault(Fault {
                code: 801,
                string: "Login failed".into()
            })
        );
    }

    #[test]
    fn broken_answers_are_errors() {
        for text in [
            "",
            "OK",
            "<html><body>502 Bad Gateway</body></html>",
            "<methodResponse><params><param><value><int>1</int></value></param></params>",
            "<methodResponse><params><param><value><int>x</int></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><boolean>2</boolean></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><base64>*</base64></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><blob>1</blob></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><int>1</int><int>2</int></value></param></params></methodResponse>",
            "<methodResponse><params></params></methodResponse>",
            "<methodResponse><params><param><value>&nbsp;</value></param></params></methodResponse>",
            "<methodResponse></methodResponse><methodResponse></methodResponse>",
        ] {
            assert!(parse_response(text).is_err(), "{text:?}");
        }
        let deep = "<value><array><data>".repeat(100);
        let text = format!("<methodResponse><params><param>{deep}");
        assert_eq!(parse_response(&text).unwrap_err().0, "XML nested too deep");
    }

    #[test]
    fn values_convert_leniently() {
        assert_eq!(Value::Int(1).as_bool(), Some(true));
        assert_eq!(Value::Str(" FALSE ".into()).as_bool(), Some(false));
        assert_eq!(Value::Int(2).as_bool(), None);
        assert_eq!(Value::Str(" 12 ".into()).as_int(), Some(12));
        assert_eq!(Value::Double(3.0).as_int(), Some(3));
        assert_eq!(Value::Double(3.5).as_int(), None);
        assert_eq!(Value::Str("212.5".into()).as_f64(), Some(212.5));
        assert_eq!(Value::Str("NaN".into()).as_f64(), None);
        assert_eq!(Value::Base64(b"abc".to_vec()).as_text().unwrap(), "abc");
        assert_eq!(Value::Bool(true).as_text(), None);
        let v = Value::Array(vec![
            Value::Str("41791234567".into()),
            Value::Bool(false),
            Value::Int(5),
        ]);
        assert_eq!(v.summary(), "[\"41791234567\", FALSE, 5]");
        assert!(Value::Str("x".repeat(500)).summary().chars().count() <= 201);
    }
}
