//! What comes back from SMSECO: the `<REPONSE>` documents (or their JSON
//! twins) of `sendsms`, `getbalance` and `getdlrs`, decoded into values, and
//! the one table from SMSECO's `statut` error codes to [`SendError`]. Pure:
//! text in, values out.
//!
//! Parsing is tolerant where it costs nothing: tag names in any case,
//! anything before `<REPONSE>` (a PHP notice) or after it ignored, values
//! given as JSON strings or numbers, and the answer's form (XML or JSON)
//! sniffed from its first character rather than assumed.

use super::request::SendRequest;
use crate::codes::Code;
use crate::providers::{DeliveryState, DeliveryStatus, SendError, http};
use quick_xml::events::Event;

// ---------------------------------------------------------------------------
// The statut table
// ---------------------------------------------------------------------------

/// The document's meaning of an error `statut` (its "Codes d'erreur"
/// table), for details when SMSECO's own `texte` is empty.
pub fn statut_meaning(statut: i64) -> Option<&'static str> {
    Some(match statut {
        -1 => "XML invalide",
        -2 => "Login non spécifié",
        -3 => "Mot de passe non spécifié",
        -4 => "Echec de l'Authentification",
        -5 => "Aucun message spécifié",
        -6 => "Pas assez de crédits ou crédits insuffisants",
        -7 => "Aucun destinataire spécifié",
        -8 => "Expéditeur non enregistré",
        -9 => "Aucuns destinataires valides",
        -10 => "La longueur de l'Id du message dépasse les 30 caractères autorisés",
        -11 => "Envoi de sms non autorisé pour ce compte",
        -12 => "Compte non actif dans le système",
        -13 => "Heure d'envoi pour message différé incorrecte",
        -14 => "Commande inconnue",
        -15 => "Aucun statut sms disponible",
        _ => return None,
    })
}

/// Maps an error `statut` (< 0) of any command to a [`SendError`]; the
/// detail keeps SMSECO's `texte` (or the document's meaning if empty).
///
/// | statut | meaning                              | kind        | code |
/// |--------|--------------------------------------|-------------|------|
/// | -1     | invalid XML (our request)            | permanent   | 999  |
/// | -2, -3 | login / password not given           | unusable    | 3    |
/// | -4     | authentication failed                | unusable    | 3    |
/// | -5     | no message                           | permanent   | 999  |
/// | -6     | not enough credits                   | unusable    | 12   |
/// | -7     | no recipient                         | permanent   | 7    |
/// | -8     | sender not registered                | permanent   | 33   |
/// | -9     | no valid recipient                   | permanent   | 7    |
/// | -10    | msgid longer than 30 characters      | permanent   | 999  |
/// | -11    | account may not send SMS             | unusable    | 3    |
/// | -12    | account not active                   | unusable    | 3    |
/// | -13    | bad time for a scheduled send        | permanent   | 999  |
/// | -14    | unknown command (wrong `url`)        | unusable    | 999  |
/// | -15    | no status available (getdlrs only)   | permanent   | 999  |
/// | other  | undocumented                         | permanent   | 999  |
pub fn statut_error(statut: i64, texte: &str) -> SendError {
    let texte = texte.trim();
    let words = if texte.is_empty() {
        statut_meaning(statut).unwrap_or("undocumented statut")
    } else {
        texte
    };
    let detail = format!("SMSECO statut {statut}: {words}");
    match statut {
        -1 | -5 | -10 | -13 | -15 => SendError::permanent(Code::INTERNAL, detail),
        -4..=-2 | -11 | -12 => SendError::unusable(Code::BAD_CREDENTIALS, detail),
        -6 => SendError::unusable(Code::NO_CREDIT, detail),
        -7 | -9 => SendError::permanent(Code::BAD_NUMBER, detail),
        -8 => SendError::permanent(Code::SENDER_NOT_ALLOWED, detail),
        -14 => SendError::unusable(Code::INTERNAL, detail),
        _ => SendError::permanent(Code::INTERNAL, detail),
    }
}

/// An answer that cannot be read: transient (the send may be retried), with
/// the start of the body for the log.
fn malformed(why: &str, text: &str) -> SendError {
    SendError::transient(format!(
        "unreadable SMSECO answer ({why}){}",
        http::snippet(text)
    ))
}

// ---------------------------------------------------------------------------
// A small, tolerant XML tree
// ---------------------------------------------------------------------------

/// An element of an answer: lower-cased local name, text, children.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Node {
    /// The tag name, lower case.
    pub name: String,
    /// Its own text (CDATA and entities resolved), untrimmed.
    pub text: String,
    /// Its child elements, in order.
    pub children: Vec<Node>,
}

impl Node {
    /// The first child named `name` (case-insensitive).
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Every child named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children
            .iter()
            .filter(move |c| c.name.eq_ignore_ascii_case(name))
    }

    /// The trimmed text of the first child named `name`, if present.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// Like [`Node::value`], empty when absent.
    fn string(&self, name: &str) -> String {
        self.value(name).unwrap_or_default().to_string()
    }
}

/// Parses the first `<REPONSE>` element of `text` (whatever precedes or
/// follows it); the error says why it could not.
pub fn parse_reponse(text: &str) -> Result<Node, String> {
    let start = find_ascii_ci(text, "<reponse").ok_or("no <REPONSE> element")?;
    let mut reader = quick_xml::Reader::from_str(&text[start..]);
    reader.config_mut().allow_dangling_amp = true;
    let mut stack: Vec<Node> = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| format!("bad XML: {e}"))?;
        match event {
            Event::Start(e) => stack.push(Node {
                name: e.local_name().as_ref().to_ascii_lowercase(),
                ..Node::default()
            }),
            Event::Empty(e) => {
                let node = Node {
                    name: e.local_name().as_ref().to_ascii_lowercase(),
                    ..Node::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.into_inner());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => top.text.push(c),
                        _ => match quick_xml::escape::resolve_predefined_entity(&r) {
                            Some(s) => top.text.push_str(s),
                            None => {
                                top.text.push('&');
                                top.text.push_str(&r);
                                top.text.push(';');
                            }
                        },
                    }
                }
            }
            Event::Eof => return Err("answer cut short".into()),
            _ => {}
        }
    }
}

/// Byte offset of `needle` (ASCII, lower case) in `haystack`, ignoring case.
fn find_ascii_ci(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    (0..h.len().saturating_sub(n.len() - 1)).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// A `statut` value: an integer, possibly signed and padded.
fn parse_statut(value: Option<&str>) -> Option<i64> {
    let v = value?.trim();
    v.strip_prefix('+').unwrap_or(v).parse().ok()
}

/// Whether the body is JSON (its first non-blank character is `{`).
fn is_json(text: &str) -> bool {
    text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n'])
        .starts_with('{')
}

/// Parses a JSON object answer.
fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    let text = text.trim_start_matches('\u{feff}').trim();
    serde_json::from_str::<serde_json::Value>(text)
        .map_err(|e| format!("bad JSON: {e}"))
        .and_then(|v| {
            if v.is_object() {
                Ok(v)
            } else {
                Err("not a JSON object".into())
            }
        })
}

/// A JSON value as a string: strings as they are, numbers written out.
fn json_string(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON `statut`, given as a number or a string.
fn json_statut(value: Option<&serde_json::Value>) -> Option<i64> {
    match value? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => parse_statut(Some(s)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// sendsms
// ---------------------------------------------------------------------------

/// A successful `sendsms` answer (`statut` ≥ 0).
#[derive(Debug, Clone, PartialEq)]
pub struct SendAnswer {
    /// `statut`: the number of valid recipients.
    pub statut: i64,
    /// `texte`: SMSECO's words on the send.
    pub texte: String,
    /// `msgfid`: SMSECO's id of the send (JSON: `msgid`).
    pub msgfid: String,
    /// `messages`: one entry per valid recipient.
    pub messages: Vec<Accepted>,
}

/// One `<messages><sms>` entry: a recipient SMSECO took.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// `smsfid`: SMSECO's id of the SMS to this number.
    pub smsfid: String,
    /// `destination`: the number as SMSECO writes it.
    pub destination: String,
}

/// Decodes a `sendsms` answer (XML §I-1 or JSON §I-3): `Ok` for
/// `statut` ≥ 0, the mapped error for `statut` < 0 (see [`statut_error`]),
/// transient for anything unreadable.
pub fn decode_send(text: &str) -> Result<SendAnswer, SendError> {
    let answer = if is_json(text) {
        let v = parse_json(text).map_err(|why| malformed(&why, text))?;
        let statut = json_statut(v.get("statut")).ok_or_else(|| malformed("no statut", text))?;
        let messages = v
            .get("messages")
            .and_then(|m| m.as_array())
            .map(|list| {
                list.iter()
                    .map(|m| Accepted {
                        smsfid: json_string(m.get("smsfid")).unwrap_or_default(),
                        destination: json_string(m.get("destination")).unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        SendAnswer {
            statut,
            texte: json_string(v.get("texte")).unwrap_or_default(),
            msgfid: json_string(v.get("msgfid").or_else(|| v.get("msgid"))).unwrap_or_default(),
            messages,
        }
    } else {
        let root = parse_reponse(text).map_err(|why| malformed(&why, text))?;
        let statut =
            parse_statut(root.value("statut")).ok_or_else(|| malformed("no statut", text))?;
        let messages = root
            .child("messages")
            .map(|m| {
                m.children_named("sms")
                    .map(|s| Accepted {
                        smsfid: s.string("smsfid"),
                        destination: s.string("destination"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        SendAnswer {
            statut,
            texte: root.string("texte"),
            msgfid: root.string("msgfid"),
            messages,
        }
    };
    if answer.statut < 0 {
        return Err(statut_error(answer.statut, &answer.texte));
    }
    if answer.statut == 0 && answer.messages.is_empty() {
        // Not in the document (errors are < 0, successes count recipients).
        return Err(SendError::permanent(
            Code::INTERNAL,
            format!("SMSECO statut 0: {}", answer.texte),
        ));
    }
    Ok(answer)
}

/// A number reduced for comparison: digits only, leading zeros dropped
/// (`0033…`, `+33…` and `33…` agree).
fn normalise(number: &str) -> String {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    digits.trim_start_matches('0').to_string()
}

/// Whether two normalised numbers are the same line written with and
/// without its country code: one ends with the other, which has at least
/// 7 digits (`07352518` is the Ivorian `22507352518`).
fn same_line(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.len() >= 7 && long.ends_with(short)
}

/// Each recipient's result, in the request's order: the `smsfid` of the
/// `messages` entry with its number; for a number SMSECO did not list,
/// permanent code 7 (it was not a valid recipient).
///
/// Numbers are matched exactly (digits, leading zeros aside), then, for
/// those left, by a unique national/international suffix. If SMSECO counted
/// more valid recipients (`statut`) than it listed, unlisted numbers may
/// have been sent: when all of them fit in that count they are reported
/// sent (under the send's `msgfid`); when only some do, which ones cannot
/// be told, and they fail with code 999 rather than being retried (which
/// could send them twice).
pub fn results(request: &SendRequest, answer: &SendAnswer) -> Vec<Result<String, SendError>> {
    let wanted: Vec<String> = request
        .recipients
        .iter()
        .map(|r| normalise(&r.number))
        .collect();
    let listed: Vec<String> = answer
        .messages
        .iter()
        .map(|m| normalise(&m.destination))
        .collect();
    let mut used = vec![false; listed.len()];
    let mut found: Vec<Option<usize>> = vec![None; wanted.len()];
    for (i, w) in wanted.iter().enumerate() {
        if let Some(j) = (0..listed.len()).find(|&j| !used[j] && listed[j] == *w) {
            used[j] = true;
            found[i] = Some(j);
        }
    }
    // Suffix matches count only when they pair one of ours with one of
    // theirs and nothing else on either side.
    let left: Vec<usize> = (0..wanted.len()).filter(|&i| found[i].is_none()).collect();
    let free: Vec<usize> = (0..listed.len()).filter(|&j| !used[j]).collect();
    for &i in &left {
        let theirs: Vec<usize> = free
            .iter()
            .copied()
            .filter(|&j| same_line(&listed[j], &wanted[i]))
            .collect();
        if let [j] = theirs[..] {
            let ours = left
                .iter()
                .filter(|&&k| same_line(&listed[j], &wanted[k]))
                .count();
            if ours == 1 {
                used[j] = true;
                found[i] = Some(j);
            }
        }
    }
    let matched = found.iter().flatten().count() as i64;
    let unmatched = found.len() as i64 - matched;
    let unlisted_valid = answer.statut - matched;
    let fallback_id = if answer.msgfid.is_empty() {
        request.msgid.clone()
    } else {
        answer.msgfid.clone()
    };
    found
        .iter()
        .map(|f| match f {
            Some(j) => {
                let id = &answer.messages[*j].smsfid;
                Ok(if id.is_empty() {
                    fallback_id.clone()
                } else {
                    id.clone()
                })
            }
            None if unlisted_valid <= 0 => Err(SendError::permanent(
                Code::BAD_NUMBER,
                format!(
                    "SMSECO did not take this number ({} of {} recipients valid){}",
                    answer.statut,
                    wanted.len(),
                    texte_suffix(&answer.texte)
                ),
            )),
            None if unlisted_valid >= unmatched => {
                tracing::warn!(
                    statut = answer.statut,
                    listed = answer.messages.len(),
                    "SMSECO counted more valid recipients than it listed; taking the unlisted ones as sent"
                );
                Ok(fallback_id.clone())
            }
            None => Err(SendError::permanent(
                Code::INTERNAL,
                format!(
                    "SMSECO counted {} valid recipients but listed {}: cannot tell whether this SMS was sent{}",
                    answer.statut,
                    answer.messages.len(),
                    texte_suffix(&answer.texte)
                ),
            )),
        })
        .collect()
}

/// `: texte` when SMSECO said something.
fn texte_suffix(texte: &str) -> String {
    if texte.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", texte.trim())
    }
}

// ---------------------------------------------------------------------------
// getbalance
// ---------------------------------------------------------------------------

/// A `getbalance` answer (§IV-1).
#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    /// `accountid`: the SMSECO account id.
    pub accountid: String,
    /// `credits`: credits left, as SMSECO writes it.
    pub credits: String,
    /// `expire`: when the credits expire, if given.
    pub expire: Option<String>,
    /// `cumul`: credits used so far, if given.
    pub cumul: Option<String>,
}

impl Balance {
    /// `credits` as a number, if it is one.
    pub fn credits_value(&self) -> Option<f64> {
        self.credits.trim().replace(',', ".").parse().ok()
    }
}

/// Decodes a `getbalance` answer (XML or JSON): `statut` 0 gives the
/// balance, < 0 the mapped error, anything else is unreadable (transient).
pub fn decode_balance(text: &str) -> Result<Balance, SendError> {
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let (statut, texte, balance) = if is_json(text) {
        let v = parse_json(text).map_err(|why| malformed(&why, text))?;
        let balance = Balance {
            accountid: json_string(v.get("accountid")).unwrap_or_default(),
            credits: json_string(v.get("credits")).unwrap_or_default(),
            expire: non_empty(json_string(v.get("expire"))),
            cumul: non_empty(json_string(v.get("cumul"))),
        };
        let texte = json_string(v.get("texte")).unwrap_or_default();
        (json_statut(v.get("statut")), texte, balance)
    } else {
        let root = parse_reponse(text).map_err(|why| malformed(&why, text))?;
        let balance = Balance {
            accountid: root.string("accountid"),
            credits: root.string("credits"),
            expire: non_empty(root.value("expire").map(str::to_string)),
            cumul: non_empty(root.value("cumul").map(str::to_string)),
        };
        (
            parse_statut(root.value("statut")),
            root.string("texte"),
            balance,
        )
    };
    match statut {
        Some(s) if s < 0 => Err(statut_error(s, &texte)),
        Some(0) if !balance.credits.is_empty() => Ok(balance),
        Some(0) => Err(malformed("no credits", text)),
        Some(s) => Err(SendError::permanent(
            Code::INTERNAL,
            format!("SMSECO statut {s}: {texte}"),
        )),
        None => Err(malformed("no statut", text)),
    }
}

// ---------------------------------------------------------------------------
// getdlrs
// ---------------------------------------------------------------------------

/// A delivery status of §III's "Définition des statuts" table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlrStatus {
    /// 50: waiting (not billed).
    Pending,
    /// 62: rejected (not billed).
    Rejected,
    /// 65: in SMSECO's local queue (billed).
    LocalQueue,
    /// 54: not sent (not billed).
    NotSent,
    /// 55: handed to the operator (billed).
    SentToOperator,
    /// 61: in the operator's queue (billed).
    OperatorQueue,
    /// 56: delivery receipt: delivered (billed).
    Delivered,
    /// 59: not delivered by the operator (billed).
    NotDelivered,
    /// 60: operator network error (billed).
    OperatorNetworkError,
    /// 49: credit error (not billed).
    CreditError,
    /// A value the document does not list.
    Other(i64),
}

impl DlrStatus {
    /// The status for SMSECO's number.
    pub fn from_code(code: i64) -> DlrStatus {
        match code {
            50 => DlrStatus::Pending,
            62 => DlrStatus::Rejected,
            65 => DlrStatus::LocalQueue,
            54 => DlrStatus::NotSent,
            55 => DlrStatus::SentToOperator,
            61 => DlrStatus::OperatorQueue,
            56 => DlrStatus::Delivered,
            59 => DlrStatus::NotDelivered,
            60 => DlrStatus::OperatorNetworkError,
            49 => DlrStatus::CreditError,
            other => DlrStatus::Other(other),
        }
    }

    /// SMSECO's number for it.
    pub fn code(self) -> i64 {
        match self {
            DlrStatus::Pending => 50,
            DlrStatus::Rejected => 62,
            DlrStatus::LocalQueue => 65,
            DlrStatus::NotSent => 54,
            DlrStatus::SentToOperator => 55,
            DlrStatus::OperatorQueue => 61,
            DlrStatus::Delivered => 56,
            DlrStatus::NotDelivered => 59,
            DlrStatus::OperatorNetworkError => 60,
            DlrStatus::CreditError => 49,
            DlrStatus::Other(code) => code,
        }
    }

    /// The table's "Facturé" column (None for an unlisted status).
    pub fn billed(self) -> Option<bool> {
        match self {
            DlrStatus::Pending
            | DlrStatus::Rejected
            | DlrStatus::NotSent
            | DlrStatus::CreditError => Some(false),
            DlrStatus::LocalQueue
            | DlrStatus::SentToOperator
            | DlrStatus::OperatorQueue
            | DlrStatus::Delivered
            | DlrStatus::NotDelivered
            | DlrStatus::OperatorNetworkError => Some(true),
            DlrStatus::Other(_) => None,
        }
    }

    /// The table's "Signification".
    pub fn meaning(self) -> &'static str {
        match self {
            DlrStatus::Pending => "en Attente",
            DlrStatus::Rejected => "Rejeté",
            DlrStatus::LocalQueue => "File d'attente locale",
            DlrStatus::NotSent => "non envoyé",
            DlrStatus::SentToOperator => "Transmis à l'Opérateur",
            DlrStatus::OperatorQueue => "File d'attente Opérateur",
            DlrStatus::Delivered => "Accusé de Réception",
            DlrStatus::NotDelivered => "Non Délivré par l'Opérateur",
            DlrStatus::OperatorNetworkError => "Erreur réseau opérateur",
            DlrStatus::CreditError => "Erreur Crédits",
            DlrStatus::Other(_) => "statut absent du document",
        }
    }

    /// The common state: waiting and queued (50, 65, 55, 61) accepted, 56
    /// delivered, the five failures (62, 54, 59, 60, 49) undelivered.
    pub fn state(self) -> DeliveryState {
        match self {
            DlrStatus::Pending
            | DlrStatus::LocalQueue
            | DlrStatus::SentToOperator
            | DlrStatus::OperatorQueue => DeliveryState::Accepted,
            DlrStatus::Delivered => DeliveryState::Delivered,
            DlrStatus::Rejected
            | DlrStatus::NotSent
            | DlrStatus::NotDelivered
            | DlrStatus::OperatorNetworkError
            | DlrStatus::CreditError => DeliveryState::undelivered(self.meaning()),
            DlrStatus::Other(_) => DeliveryState::Unknown,
        }
    }

    /// Whether the status is an end state (delivered or failed for good)
    /// rather than a step on the way (waiting, queued, handed over).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            DlrStatus::Pending
                | DlrStatus::LocalQueue
                | DlrStatus::SentToOperator
                | DlrStatus::OperatorQueue
                | DlrStatus::Other(_)
        )
    }
}

/// One `<dlr>` of a `getdlrs` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryReport {
    /// `msgfid` of the enclosing `<message>`: the send.
    pub msgfid: String,
    /// `smsfid`: the SMS (the id `send` returned for it).
    pub smsfid: String,
    /// `destination`: the number.
    pub destination: String,
    /// `date`: when the status was reached, as SMSECO writes it.
    pub date: String,
    /// `statut`: the status.
    pub status: DlrStatus,
    /// `libelle`: the status's name.
    pub libelle: String,
    /// `texte`: a longer explanation.
    pub texte: String,
}

impl DeliveryReport {
    /// The common status, with SMSECO's `libelle` (and `texte`, when it
    /// says more) as the provider's words.
    pub fn delivery(&self) -> DeliveryStatus {
        let libelle = match self.libelle.trim() {
            "" => self.status.meaning(),
            libelle => libelle,
        };
        let text = match self.texte.trim() {
            "" => libelle.to_owned(),
            texte => format!("{libelle}: {texte}"),
        };
        DeliveryStatus {
            id: self.smsfid.clone(),
            number: Some(self.destination.clone()),
            state: self.status.state(),
            provider_code: self.status.code().to_string(),
            provider_text: text,
            at: Some(self.date.clone()).filter(|d| !d.trim().is_empty()),
        }
    }
}

/// Decodes a `getdlrs` answer (§III-1 XML, §III-3-2 JSON): `statut` 0 gives
/// every `<dlr>` of every `<message>`; -15 (no status available) gives
/// none; other negative values are mapped errors; anything unreadable
/// (including a `<dlr>` without a numeric `statut`) is transient.
pub fn decode_dlrs(text: &str) -> Result<Vec<DeliveryReport>, SendError> {
    let (statut, texte, reports) = if is_json(text) {
        let v = parse_json(text).map_err(|why| malformed(&why, text))?;
        let mut reports = Vec::new();
        for message in v
            .get("messages")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
        {
            let msgfid = json_string(message.get("msgfid")).unwrap_or_default();
            for dlr in message
                .get("dlrs")
                .and_then(|d| d.as_array())
                .into_iter()
                .flatten()
            {
                // §III-3-2 spells it "statur".
                let code = json_statut(dlr.get("statut").or_else(|| dlr.get("statur")))
                    .ok_or_else(|| malformed("a dlr without statut", text))?;
                reports.push(DeliveryReport {
                    msgfid: msgfid.clone(),
                    smsfid: json_string(dlr.get("smsfid")).unwrap_or_default(),
                    destination: json_string(dlr.get("destination")).unwrap_or_default(),
                    date: json_string(dlr.get("date")).unwrap_or_default(),
                    status: DlrStatus::from_code(code),
                    libelle: json_string(dlr.get("libelle")).unwrap_or_default(),
                    texte: json_string(dlr.get("texte")).unwrap_or_default(),
                });
            }
        }
        let texte = json_string(v.get("texte")).unwrap_or_default();
        (json_statut(v.get("statut")), texte, reports)
    } else {
        let root = parse_reponse(text).map_err(|why| malformed(&why, text))?;
        let mut reports = Vec::new();
        for message in root
            .child("messages")
            .into_iter()
            .flat_map(|m| m.children_named("message"))
        {
            let msgfid = message.string("msgfid");
            for dlr in message
                .child("dlrs")
                .into_iter()
                .flat_map(|d| d.children_named("dlr"))
            {
                let code = parse_statut(dlr.value("statut"))
                    .ok_or_else(|| malformed("a dlr without statut", text))?;
                reports.push(DeliveryReport {
                    msgfid: msgfid.clone(),
                    smsfid: dlr.string("smsfid"),
                    destination: dlr.string("destination"),
                    date: dlr.string("date"),
                    status: DlrStatus::from_code(code),
                    libelle: dlr.string("libelle"),
                    texte: dlr.string("texte"),
                });
            }
        }
        (
            parse_statut(root.value("statut")),
            root.string("texte"),
            reports,
        )
    };
    match statut {
        Some(0) => Ok(reports),
        Some(-15) => Ok(Vec::new()),
        Some(s) if s < 0 => Err(statut_error(s, &texte)),
        Some(s) => Err(SendError::permanent(
            Code::INTERNAL,
            format!("SMSECO statut {s}: {texte}"),
        )),
        None => Err(malformed("no statut", text)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::{Recipient, SendRequest};
    use super::*;
    use crate::providers::FailureKind;

    fn request(numbers: &[&str]) -> SendRequest {
        SendRequest {
            msgid: "a1b2c3d4-1".into(),
            sender: Some("MaSociete".into()),
            datesend: None,
            unicode: false,
            recipients: numbers
                .iter()
                .enumerate()
                .map(|(i, n)| Recipient {
                    index: i,
                    number: n.to_string(),
                    text: "A".into(),
                })
                .collect(),
        }
    }

    /// §I-1's answer structure, filled in for three valid recipients.
    const SEND_OK: &str = "<REPONSE>
  <msgfid>55857bdb8d51b7-38880789</msgfid>
  <statut>3</statut>
  <texte>Message envoyé</texte>
  <destinataires>3</destinataires>
  <sms>3</sms>
  <credits>3</credits>
  <solde>209</solde>
  <messages>
    <sms>
      <smsfid>55857bf80517a0-38726421</smsfid>
      <destination>33601020304</destination>
      <credits>1</credits>
    </sms>
    <sms>
      <smsfid>55857bf80517a0-38726422</smsfid>
      <destination>22678657808</destination>
      <credits>1</credits>
    </sms>
    <sms>
      <smsfid>55857bf80517a0-38726423</smsfid>
      <destination>22507352518</destination>
      <credits>1</credits>
    </sms>
  </messages>
</REPONSE>";

    #[test]
    fn send_answer_of_the_document() {
        let answer = decode_send(SEND_OK).unwrap();
        assert_eq!(answer.statut, 3);
        assert_eq!(answer.msgfid, "55857bdb8d51b7-38880789");
        assert_eq!(answer.texte, "Message envoyé");
        assert_eq!(answer.messages.len(), 3);
        // Results follow our order, not SMSECO's.
        let req = request(&["22507352518", "33601020304", "22678657808"]);
        assert_eq!(
            results(&req, &answer),
            vec![
                Ok("55857bf80517a0-38726423".into()),
                Ok("55857bf80517a0-38726421".into()),
                Ok("55857bf80517a0-38726422".into()),
            ]
        );
    }

    #[test]
    fn a_number_missing_from_messages_is_invalid() {
        let body = "<REPONSE><msgfid>m1</msgfid><statut>1</statut><texte>ok</texte>\
            <messages><sms><smsfid>s1</smsfid><destination>33601020304</destination>\
            <credits>1</credits></sms></messages></REPONSE>";
        let answer = decode_send(body).unwrap();
        let out = results(&request(&["33601020304", "33600000000"]), &answer);
        assert_eq!(out[0], Ok("s1".into()));
        let e = out[1].clone().unwrap_err();
        assert_eq!((e.kind, e.code), (FailureKind::Permanent, Code::BAD_NUMBER));
        assert!(e.detail.contains("1 of 2"), "{}", e.detail);
    }

    #[test]
    fn destinations_written_differently_still_match() {
        let body = "<reponse><msgfid>m1</msgfid><statut>2</statut>\
            <messages><sms><smsfid>s1</smsfid><destination>+33 6 01 02 03 04</destination></sms>\
            <sms><smsfid>s2</smsfid><destination>07352518</destination></sms></messages></reponse>";
        let answer = decode_send(body).unwrap();
        let out = results(&request(&["22507352518", "33601020304"]), &answer);
        assert_eq!(out, vec![Ok("s2".into()), Ok("s1".into())]);
        // A national number that could be either of ours matches neither:
        // SMSECO counted one valid recipient, so which was sent is unknown.
        let body = "<REPONSE><msgfid>m1</msgfid><statut>1</statut><messages><sms>\
            <smsfid>s1</smsfid><destination>01020304</destination></sms></messages></REPONSE>";
        let answer = decode_send(body).unwrap();
        let out = results(&request(&["33601020304", "22501020304"]), &answer);
        for e in out {
            assert_eq!(e.unwrap_err().code, Code::INTERNAL);
        }
    }

    #[test]
    fn fewer_listed_than_counted() {
        // statut says 2 valid, only one listed, one of ours unmatched: sent.
        let body = "<REPONSE><msgfid>m1</msgfid><statut>2</statut><messages><sms>\
            <smsfid>s1</smsfid><destination>33601020304</destination></sms></messages></REPONSE>";
        let answer = decode_send(body).unwrap();
        let out = results(&request(&["33601020304", "33601020305"]), &answer);
        assert_eq!(out, vec![Ok("s1".into()), Ok("m1".into())]);
        // statut says 2 valid, one listed, two of ours unmatched: unknowable.
        let out = results(
            &request(&["33601020304", "33601020305", "33601020306"]),
            &answer,
        );
        assert_eq!(out[0], Ok("s1".into()));
        for e in [&out[1], &out[2]] {
            let e = e.clone().unwrap_err();
            assert_eq!((e.kind, e.code), (FailureKind::Permanent, Code::INTERNAL));
        }
        // statut 0 and nothing listed is undocumented.
        let e = decode_send("<REPONSE><statut>0</statut><texte>?</texte></REPONSE>").unwrap_err();
        assert_eq!((e.kind, e.code), (FailureKind::Permanent, Code::INTERNAL));
    }

    #[test]
    fn every_error_statut_is_mapped() {
        use FailureKind::*;
        let table: &[(i64, FailureKind, u16)] = &[
            (-1, Permanent, 999),
            (-2, ProviderUnusable, 3),
            (-3, ProviderUnusable, 3),
            (-4, ProviderUnusable, 3),
            (-5, Permanent, 999),
            (-6, ProviderUnusable, 12),
            (-7, Permanent, 7),
            (-8, Permanent, 33),
            (-9, Permanent, 7),
            (-10, Permanent, 999),
            (-11, ProviderUnusable, 3),
            (-12, ProviderUnusable, 3),
            (-13, Permanent, 999),
            (-14, ProviderUnusable, 999),
            (-15, Permanent, 999),
            (-16, Permanent, 999),
        ];
        for &(statut, kind, code) in table {
            // §I-1's error structure.
            let body = format!(
                "<REPONSE>\n<statut>{statut}</statut>\n<texte>t{statut}</texte>\n</REPONSE>"
            );
            let e = decode_send(&body).unwrap_err();
            assert_eq!((e.kind, e.code), (kind, Code(code)), "statut {statut}");
            assert_eq!(e.detail, format!("SMSECO statut {statut}: t{statut}"));
            // §I-3's JSON error structure.
            let json = format!("{{\"statut\":{statut},\"texte\":\"t{statut}\"}}");
            let e = decode_send(&json).unwrap_err();
            assert_eq!((e.kind, e.code), (kind, Code(code)), "json statut {statut}");
        }
        // An empty texte falls back to the document's words.
        let e = decode_send("<REPONSE><statut>-4</statut><texte></texte></REPONSE>").unwrap_err();
        assert_eq!(e.detail, "SMSECO statut -4: Echec de l'Authentification");
    }

    #[test]
    fn unreadable_answers_are_transient() {
        for body in [
            "",
            "<html><body>Maintenance</body></html>",
            "<REPONSE><statut>3</statut><messages>",
            "<REPONSE><texte>no statut</texte></REPONSE>",
            // The document's bare structure: statut is empty.
            "<REPONSE>\n<statut></statut>\n<texte></texte>\n</REPONSE>",
            "<REPONSE><statut>abc</statut></REPONSE>",
            "{\"texte\":\"x\"}",
            "{not json",
        ] {
            let e = decode_send(body).unwrap_err();
            assert!(e.is_transient(), "{body:?}: {e:?}");
            assert!(
                e.detail.starts_with("unreadable SMSECO answer"),
                "{}",
                e.detail
            );
        }
    }

    #[test]
    fn tolerant_parsing() {
        // A PHP notice before, an XML declaration, entities, CDATA, Latin-1
        // words already decoded by the HTTP layer.
        let body = "Notice: x<br/>\n<?xml version=\"1.0\"?><Reponse><MsgFid>m&amp;1</MsgFid>\
            <Statut> 1 </Statut><Texte><![CDATA[Envoyé <ok>]]> &#233; &eacute; & co</Texte>\
            <Messages><SMS><SMSFID>s1</SMSFID><Destination>33601020304</Destination></SMS>\
            </Messages></Reponse>trailing";
        let answer = decode_send(body).unwrap();
        assert_eq!(answer.msgfid, "m&1");
        assert_eq!(answer.texte, "Envoyé <ok> é &eacute; & co");
        assert_eq!(answer.messages[0].smsfid, "s1");
    }

    #[test]
    fn json_send_answer_of_the_document() {
        // §I-3's structure: ids and counts as strings, credits a number.
        let body = r#"{"msgid":"m1","statut":2,"texte":"ok","destinataires":"2","sms":"2","credits":"2","solde":"210","messages":[{"smsfid":"s1","destination":"33601020304","credits":1},{"smsfid":"s2","destination":"33601020305","credits":1}]}"#;
        let answer = decode_send(body).unwrap();
        assert_eq!(answer.msgfid, "m1");
        let out = results(&request(&["33601020305", "33601020304"]), &answer);
        assert_eq!(out, vec![Ok("s2".into()), Ok("s1".into())]);
        // statut as a string, ids as numbers.
        let body =
            r#"{"msgfid":7,"statut":"1","messages":[{"smsfid":99,"destination":33601020304}]}"#;
        let answer = decode_send(body).unwrap();
        assert_eq!(
            results(&request(&["33601020304"]), &answer),
            vec![Ok("99".into())]
        );
    }

    #[test]
    fn balance_answer_of_the_document() {
        let body = "<REPONSE>
    <accountid>1234</accountid>
    <statut>0</statut>
    <texte>OK</texte>
    <credits>212.5</credits>
    <expire>2026-12-31</expire>
    <cumul>1500</cumul>
</REPONSE>";
        let b = decode_balance(body).unwrap();
        assert_eq!(
            b,
            Balance {
                accountid: "1234".into(),
                credits: "212.5".into(),
                expire: Some("2026-12-31".into()),
                cumul: Some("1500".into()),
            }
        );
        assert_eq!(b.credits_value(), Some(212.5));
        // §IV-1's error structure.
        for (statut, kind, code) in [
            (-1, FailureKind::Permanent, Code::INTERNAL),
            (-2, FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS),
            (-3, FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS),
            (-4, FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS),
        ] {
            let body = format!(
                "<REPONSE>\n<accountid></accountid>\n<statut>{statut}</statut>\n<texte>x</texte>\n</REPONSE>"
            );
            let e = decode_balance(&body).unwrap_err();
            assert_eq!((e.kind, e.code), (kind, code), "{statut}");
        }
        assert!(
            decode_balance("<REPONSE><statut>0</statut></REPONSE>")
                .unwrap_err()
                .is_transient()
        );
        let b = decode_balance(r#"{"accountid":"1","statut":"0","credits":12}"#).unwrap();
        assert_eq!(b.credits, "12");
        assert_eq!(b.expire, None);
    }

    #[test]
    fn dlr_answer_of_the_document() {
        // §III-1's structure, two sends, three reports.
        let body = "<REPONSE>
  <accountid>1234</accountid>
  <statut>0</statut>
  <texte>OK</texte>
  <messages>
    <message>
      <msgfid>m1</msgfid>
      <dlrs>
        <dlr>
          <smsfid>s1</smsfid>
          <destination>33601020304</destination>
          <date>2025-06-15 16:07:12</date>
          <statut>56</statut>
          <libelle>Accusé de Réception</libelle>
          <texte>Délivré</texte>
        </dlr>
        <dlr>
          <smsfid>s2</smsfid>
          <destination>33601020305</destination>
          <date>2025-06-15 16:07:13</date>
          <statut>59</statut>
          <libelle>Non Délivré par l'Opérateur</libelle>
          <texte>Absent</texte>
        </dlr>
      </dlrs>
    </message>
    <message>
      <msgfid>m2</msgfid>
      <dlrs>
        <dlr>
          <smsfid>s3</smsfid>
          <destination>22507352518</destination>
          <date>2025-06-15 16:08:00</date>
          <statut>50</statut>
          <libelle>en Attente</libelle>
          <texte></texte>
        </dlr>
      </dlrs>
    </message>
  </messages>
</REPONSE>";
        let reports = decode_dlrs(body).unwrap();
        assert_eq!(reports.len(), 3);
        assert_eq!(
            reports[0],
            DeliveryReport {
                msgfid: "m1".into(),
                smsfid: "s1".into(),
                destination: "33601020304".into(),
                date: "2025-06-15 16:07:12".into(),
                status: DlrStatus::Delivered,
                libelle: "Accusé de Réception".into(),
                texte: "Délivré".into(),
            }
        );
        assert_eq!(reports[1].status, DlrStatus::NotDelivered);
        assert_eq!(reports[2].msgfid, "m2");
        assert_eq!(reports[2].status, DlrStatus::Pending);

        // §III-3-2's JSON, with its "statur" spelling.
        let json = r#"{ "accountid": "1", "statut": "0", "texte": "OK", "messages": [{"msgfid": "m1", "dlrs": [{"smsfid": "s1", "destination": "33601020304", "date": "d", "statur": "55", "libelle": "Transmis", "texte": "x"}]}]}"#;
        let reports = decode_dlrs(json).unwrap();
        assert_eq!(reports[0].status, DlrStatus::SentToOperator);
        assert_eq!(reports[0].smsfid, "s1");

        // -15: nothing to report; errors mapped; unreadable transient.
        assert_eq!(
            decode_dlrs(
                "<REPONSE><statut>-15</statut><texte>Aucun</texte><messages>\n</messages></REPONSE>"
            )
            .unwrap(),
            vec![]
        );
        let e = decode_dlrs(
            "<REPONSE>\n<statut>-4</statut>\n<texte>x</texte>\n<messages>\n</messages>\n</REPONSE>",
        )
        .unwrap_err();
        assert_eq!(e.code, Code::BAD_CREDENTIALS);
        assert!(decode_dlrs("<REPONSE><statut>0</statut><messages><message><dlrs><dlr><statut>x</statut></dlr></dlrs></message></messages></REPONSE>").unwrap_err().is_transient());
    }

    #[test]
    fn dlr_status_table() {
        let table: &[(i64, DlrStatus, bool, bool)] = &[
            (50, DlrStatus::Pending, false, false),
            (62, DlrStatus::Rejected, false, true),
            (65, DlrStatus::LocalQueue, true, false),
            (54, DlrStatus::NotSent, false, true),
            (55, DlrStatus::SentToOperator, true, false),
            (61, DlrStatus::OperatorQueue, true, false),
            (56, DlrStatus::Delivered, true, true),
            (59, DlrStatus::NotDelivered, true, true),
            (60, DlrStatus::OperatorNetworkError, true, true),
            (49, DlrStatus::CreditError, false, true),
        ];
        for &(code, status, billed, is_final) in table {
            assert_eq!(DlrStatus::from_code(code), status);
            assert_eq!(status.code(), code);
            assert_eq!(status.billed(), Some(billed), "{code}");
            assert_eq!(status.is_final(), is_final, "{code}");
        }
        assert_eq!(DlrStatus::from_code(7), DlrStatus::Other(7));
        assert_eq!(DlrStatus::Other(7).billed(), None);
    }

    #[test]
    fn every_dlr_status_has_a_common_state() {
        let undelivered = |s: DlrStatus| DeliveryState::undelivered(s.meaning());
        let rows = [
            (50, DeliveryState::Accepted),
            (62, undelivered(DlrStatus::Rejected)),
            (65, DeliveryState::Accepted),
            (54, undelivered(DlrStatus::NotSent)),
            (55, DeliveryState::Accepted),
            (61, DeliveryState::Accepted),
            (56, DeliveryState::Delivered),
            (59, undelivered(DlrStatus::NotDelivered)),
            (60, undelivered(DlrStatus::OperatorNetworkError)),
            (49, undelivered(DlrStatus::CreditError)),
            (7, DeliveryState::Unknown),
        ];
        for (code, state) in rows {
            let status = DlrStatus::from_code(code);
            assert_eq!(status.state(), state, "{code}");
            // Final in SMSECO's sense is final in the common one.
            assert_eq!(status.state().is_final(), status.is_final(), "{code}");
        }
    }

    #[test]
    fn a_dlr_as_a_common_status() {
        let body = "<REPONSE><statut>0</statut><messages><message><msgfid>m1</msgfid><dlrs>\
            <dlr><smsfid>s1</smsfid><destination>33601020304</destination><date>2025-06-15 16:07:12</date>\
            <statut>59</statut><libelle>Non Délivré par l'Opérateur</libelle><texte>Absent</texte></dlr>\
            <dlr><smsfid>s2</smsfid><destination>33601020305</destination><date></date>\
            <statut>56</statut><libelle></libelle><texte></texte></dlr>\
            </dlrs></message></messages></REPONSE>";
        let reports = decode_dlrs(body).unwrap();
        assert_eq!(
            reports[0].delivery(),
            DeliveryStatus {
                id: "s1".into(),
                number: Some("33601020304".into()),
                state: DeliveryState::undelivered("Non Délivré par l'Opérateur"),
                provider_code: "59".into(),
                provider_text: "Non Délivré par l'Opérateur: Absent".into(),
                at: Some("2025-06-15 16:07:12".into()),
            }
        );
        let second = reports[1].delivery();
        assert_eq!(
            (second.state, second.provider_text.as_str(), second.at),
            (DeliveryState::Delivered, "Accusé de Réception", None)
        );
    }
}
