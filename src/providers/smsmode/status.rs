//! Delivery reports (`compteRendu.do`, item 4) and SMS status
//! (`smsStatus.do`, item 11), pure: the status codes of the annex, and
//! decoders for both answers. Not yet used by the dispatcher; the parent
//! module exposes them as [`Smsmode::delivery_report`] and
//! [`Smsmode::sms_status`].
//!
//! [`Smsmode::delivery_report`]: super::Smsmode::delivery_report
//! [`Smsmode::sms_status`]: super::Smsmode::sms_status

use super::wire::{malformed, split_answer};
use crate::codes::Code;
use crate::providers::{DeliveryState, DeliveryStatus, SendError};

/// The delivery report call.
pub const COMPTE_RENDU_PATH: &str = "compteRendu.do";
/// The SMS status call.
pub const SMS_STATUS_PATH: &str = "smsStatus.do";

/// A status of an SMS (or of a campaign): the annex "Liste récapitulative
/// des statuts des SMS retournés", which the tables of items 4 and 11 draw
/// from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0 "Envoyé".
    Sent,
    /// 1 "En cours".
    InProgress,
    /// 2 "Erreur interne".
    InternalError,
    /// 10 "Programmé".
    Scheduled,
    /// 11 "Reçu" (by the phone).
    Received,
    /// 12 "Partiellement délivré" (a campaign).
    PartiallyDelivered,
    /// 13 "Délivré opérateur (statut temporaire)".
    DeliveredToOperator,
    /// 14 "Délivré".
    Delivered,
    /// 15 "Partiellement reçu" (a campaign).
    PartiallyReceived,
    /// 16 "Ecouté" (a voice message).
    Listened,
    /// 21 "Non délivrable".
    Undeliverable,
    /// 22 "Rejeté".
    Rejected,
    /// 33 "Non envoyé - crédit insuffisant".
    NoCredit,
    /// 34 "Erreur routage" (the recipient's network is unknown).
    RoutingError,
    /// 35 "Erreur réception" (the operator did not deliver it).
    ReceptionError,
    /// 36 "Erreur message".
    MessageError,
    /// 37 "Message expiré".
    Expired,
    /// 38 "Message trop long".
    TooLong,
    /// 39 "Erreur réception", as item 11's table numbers it (the annex has
    /// these words under 35).
    ReceptionError39,
    /// 40 "Modèle".
    Template,
    /// 50 "Non délivré".
    NotDelivered,
    /// 100 "Lu".
    Read,
    /// 101 "Non lu".
    Unread,
    /// 999 "Indéfini".
    Undefined,
    /// 3501 "Erreur temporaire opérateur".
    TemporaryOperator,
    /// 3502 "Erreur temporaire absence".
    TemporaryAbsence,
    /// 3503 "Erreur temporaire téléphone".
    TemporaryHandset,
    /// 3504 "Erreur temporaire portabilité".
    TemporaryPortability,
    /// 3521 "Erreur permanente opérateur".
    PermanentOperator,
    /// 3522 "Erreur permanente absence".
    PermanentAbsence,
    /// 3523 "Erreur permanente téléphone".
    PermanentHandset,
    /// 3524 "Erreur permanente anti spam".
    PermanentAntiSpam,
    /// 3525 "Erreur permanente contenu" (item 11 prints 3526 twice; the
    /// annex gives 3525).
    PermanentContent,
    /// 3526 "Erreur permanente portabilité".
    PermanentPortability,
    /// 3527 "Erreur permanente roaming".
    PermanentRoaming,
    /// 3560 "Erreur non routable".
    NotRoutable,
    /// 3599 "Erreur autre".
    OtherError,
    /// 3998 "Destinataire invalide" / "Numéro invalide".
    InvalidRecipient,
    /// 3999 "Destinataire blacklisté".
    Blacklisted,
    /// A code the document does not list, kept as given.
    Unknown(u32),
}

/// What a status means for the SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// Not final yet (sent, scheduled, at the operator, temporary errors).
    Pending,
    /// It reached the phone.
    Delivered,
    /// A campaign reached some of its recipients only.
    Partial,
    /// It will not be delivered.
    Failed,
    /// The status says nothing about delivery (template, undefined, unknown).
    Unknown,
}

impl Status {
    /// The status of a code.
    pub fn from_code(code: u32) -> Status {
        match code {
            0 => Status::Sent,
            1 => Status::InProgress,
            2 => Status::InternalError,
            10 => Status::Scheduled,
            11 => Status::Received,
            12 => Status::PartiallyDelivered,
            13 => Status::DeliveredToOperator,
            14 => Status::Delivered,
            15 => Status::PartiallyReceived,
            16 => Status::Listened,
            21 => Status::Undeliverable,
            22 => Status::Rejected,
            33 => Status::NoCredit,
            34 => Status::RoutingError,
            35 => Status::ReceptionError,
            36 => Status::MessageError,
            37 => Status::Expired,
            38 => Status::TooLong,
            39 => Status::ReceptionError39,
            40 => Status::Template,
            50 => Status::NotDelivered,
            100 => Status::Read,
            101 => Status::Unread,
            999 => Status::Undefined,
            3501 => Status::TemporaryOperator,
            3502 => Status::TemporaryAbsence,
            3503 => Status::TemporaryHandset,
            3504 => Status::TemporaryPortability,
            3521 => Status::PermanentOperator,
            3522 => Status::PermanentAbsence,
            3523 => Status::PermanentHandset,
            3524 => Status::PermanentAntiSpam,
            3525 => Status::PermanentContent,
            3526 => Status::PermanentPortability,
            3527 => Status::PermanentRoaming,
            3560 => Status::NotRoutable,
            3599 => Status::OtherError,
            3998 => Status::InvalidRecipient,
            3999 => Status::Blacklisted,
            other => Status::Unknown(other),
        }
    }

    /// The status's code.
    pub fn code(self) -> u32 {
        match self {
            Status::Sent => 0,
            Status::InProgress => 1,
            Status::InternalError => 2,
            Status::Scheduled => 10,
            Status::Received => 11,
            Status::PartiallyDelivered => 12,
            Status::DeliveredToOperator => 13,
            Status::Delivered => 14,
            Status::PartiallyReceived => 15,
            Status::Listened => 16,
            Status::Undeliverable => 21,
            Status::Rejected => 22,
            Status::NoCredit => 33,
            Status::RoutingError => 34,
            Status::ReceptionError => 35,
            Status::MessageError => 36,
            Status::Expired => 37,
            Status::TooLong => 38,
            Status::ReceptionError39 => 39,
            Status::Template => 40,
            Status::NotDelivered => 50,
            Status::Read => 100,
            Status::Unread => 101,
            Status::Undefined => 999,
            Status::TemporaryOperator => 3501,
            Status::TemporaryAbsence => 3502,
            Status::TemporaryHandset => 3503,
            Status::TemporaryPortability => 3504,
            Status::PermanentOperator => 3521,
            Status::PermanentAbsence => 3522,
            Status::PermanentHandset => 3523,
            Status::PermanentAntiSpam => 3524,
            Status::PermanentContent => 3525,
            Status::PermanentPortability => 3526,
            Status::PermanentRoaming => 3527,
            Status::NotRoutable => 3560,
            Status::OtherError => 3599,
            Status::InvalidRecipient => 3998,
            Status::Blacklisted => 3999,
            Status::Unknown(code) => code,
        }
    }

    /// What the status means for delivery.
    pub fn kind(self) -> StatusKind {
        use Status::*;
        match self {
            Sent | InProgress | Scheduled | DeliveredToOperator | TemporaryOperator
            | TemporaryAbsence | TemporaryHandset | TemporaryPortability => StatusKind::Pending,
            Received | Delivered | Listened | Read | Unread => StatusKind::Delivered,
            PartiallyDelivered | PartiallyReceived => StatusKind::Partial,
            InternalError | Undeliverable | Rejected | NoCredit | RoutingError | ReceptionError
            | MessageError | Expired | TooLong | ReceptionError39 | NotDelivered
            | PermanentOperator | PermanentAbsence | PermanentHandset | PermanentAntiSpam
            | PermanentContent | PermanentPortability | PermanentRoaming | NotRoutable
            | OtherError | InvalidRecipient | Blacklisted => StatusKind::Failed,
            Template | Undefined | Unknown(_) => StatusKind::Unknown,
        }
    }

    /// The annex's words for the status.
    pub fn label(self) -> &'static str {
        use Status::*;
        match self {
            Sent => "Envoyé",
            InProgress => "En cours",
            InternalError => "Erreur interne",
            Scheduled => "Programmé",
            Received => "Reçu",
            PartiallyDelivered => "Partiellement délivré",
            DeliveredToOperator => "Délivré opérateur (statut temporaire)",
            Delivered => "Délivré",
            PartiallyReceived => "Partiellement reçu",
            Listened => "Ecouté",
            Undeliverable => "Non délivrable",
            Rejected => "Rejeté",
            NoCredit => "Non envoyé - crédit insuffisant",
            RoutingError => "Erreur routage",
            ReceptionError | ReceptionError39 => "Erreur réception",
            MessageError => "Erreur message",
            Expired => "Message expiré",
            TooLong => "Message trop long",
            Template => "Modèle",
            NotDelivered => "Non délivré",
            Read => "Lu",
            Unread => "Non lu",
            Undefined => "Indéfini",
            TemporaryOperator => "Erreur temporaire opérateur",
            TemporaryAbsence => "Erreur temporaire absence",
            TemporaryHandset => "Erreur temporaire téléphone",
            TemporaryPortability => "Erreur temporaire portabilité",
            PermanentOperator => "Erreur permanente opérateur",
            PermanentAbsence => "Erreur permanente absence",
            PermanentHandset => "Erreur permanente téléphone",
            PermanentAntiSpam => "Erreur permanente anti spam",
            PermanentContent => "Erreur permanente contenu",
            PermanentPortability => "Erreur permanente portabilité",
            PermanentRoaming => "Erreur permanente roaming",
            NotRoutable => "Erreur non routable",
            OtherError => "Erreur autre",
            InvalidRecipient => "Destinataire invalide",
            Blacklisted => "Destinataire blacklisté",
            Unknown(_) => "statut absent du document",
        }
    }

    /// The common delivery state: pending statuses are accepted, 37 is
    /// expired, the other failures undelivered (with the annex's words); a
    /// campaign delivered to some recipients only is undelivered (not every
    /// SMS of it arrived); 40, 999 and unlisted codes are unknown.
    pub fn delivery_state(self) -> DeliveryState {
        match self.kind() {
            StatusKind::Pending => DeliveryState::Accepted,
            StatusKind::Delivered => DeliveryState::Delivered,
            _ if self == Status::Expired => DeliveryState::Expired,
            StatusKind::Partial | StatusKind::Failed => DeliveryState::undelivered(self.label()),
            StatusKind::Unknown => DeliveryState::Unknown,
        }
    }

    /// The iSendPro code a failed SMS would be reported with (`None` unless
    /// [`StatusKind::Failed`]).
    pub fn failure_code(self) -> Option<Code> {
        if self.kind() != StatusKind::Failed {
            return None;
        }
        Some(match self {
            Status::InvalidRecipient => Code::BAD_NUMBER,
            Status::Blacklisted => Code::BLACKLISTED,
            Status::NoCredit => Code::NO_CREDIT,
            _ => Code::INTERNAL,
        })
    }
}

/// One line of a delivery report: a recipient and its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The number as sMsmode gives it (international digits, `336…`).
    pub number: String,
    /// Its status (item 4's table: 0, 2, 11, 13, 34, 35; any annex code).
    pub status: Status,
}

impl RecipientStatus {
    /// The common status of this line of the report of SMS `sms_id`.
    pub fn delivery(&self, sms_id: &str) -> DeliveryStatus {
        DeliveryStatus {
            id: sms_id.to_owned(),
            number: Some(self.number.clone()),
            state: self.status.delivery_state(),
            provider_code: self.status.code().to_string(),
            provider_text: self.status.label().to_owned(),
            at: None,
        }
    }
}

/// Reads a `compteRendu.do` answer: `numéro statut | numéro statut | …`, or
/// an error code (`61` or `61 | description`, item 4's table). An empty
/// answer is an empty report.
pub fn decode_compte_rendu(text: &str) -> Result<Vec<RecipientStatus>, SendError> {
    let trimmed = text.trim().trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let first = trimmed.split('|').next().unwrap_or("");
    if first.split_whitespace().count() == 1 {
        let (code, rest) = split_answer(trimmed)?;
        return Err(compte_rendu_error(code, &rest.join(" | ")));
    }
    let mut report = Vec::new();
    for entry in trimmed.split('|').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let mut words = entry.split_whitespace();
        let (Some(number), Some(status), None) = (words.next(), words.next(), words.next()) else {
            return Err(malformed(text));
        };
        let number_ok = number
            .strip_prefix('+')
            .unwrap_or(number)
            .bytes()
            .all(|b| b.is_ascii_digit());
        let status = status.parse::<u32>().ok().filter(|_| number_ok);
        let Some(status) = status else {
            return Err(malformed(text));
        };
        report.push(RecipientStatus {
            number: number.to_string(),
            status: Status::from_code(status),
        });
    }
    Ok(report)
}

/// Item 4's error table: a `compteRendu.do` error code → an error.
pub fn compte_rendu_error(code: u32, description: &str) -> SendError {
    let detail = |meaning: &str| query_detail("compteRendu", code, meaning, description);
    match code {
        // "Erreur interne lors de la requête".
        31 => SendError::transient(detail("internal error")),
        // Not in this table: the API's authentication code everywhere else.
        32 => SendError::unusable(Code::BAD_CREDENTIALS, detail("authentication failed")),
        // "Paramètre obligatoire manquant".
        35 => SendError::permanent(Code::INTERNAL, detail("missing parameter")),
        // "SMS n'existant pas ou plus".
        61 => SendError::permanent(Code::INTERNAL, detail("no such SMS")),
        _ => SendError::permanent(Code::INTERNAL, detail("undocumented code")),
    }
}

/// A `smsStatus.do` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsStatus {
    /// The status (of the campaign, if the SMS had several recipients).
    pub status: Status,
    /// sMsmode's description, as given (`Envoyé`).
    pub description: String,
}

impl SmsStatus {
    /// The common status of SMS `sms_id`, with sMsmode's own description
    /// (else the annex's words).
    pub fn delivery(&self, sms_id: &str) -> DeliveryStatus {
        let text = if self.description.trim().is_empty() {
            self.status.label().to_owned()
        } else {
            self.description.trim().to_owned()
        };
        DeliveryStatus {
            id: sms_id.to_owned(),
            number: None,
            state: self.status.delivery_state(),
            provider_code: self.status.code().to_string(),
            provider_text: text,
            at: None,
        }
    }
}

/// Reads a `smsStatus.do` answer, `statut | description`; the codes item
/// 11's table gives as errors (32, 35, 61) are errors.
pub fn decode_sms_status(text: &str) -> Result<SmsStatus, SendError> {
    let (code, rest) = split_answer(text)?;
    let description = rest.join(" | ");
    match code {
        31 | 32 | 35 | 61 => Err(sms_status_error(code, &description)),
        _ => Ok(SmsStatus {
            status: Status::from_code(code),
            description,
        }),
    }
}

/// Item 11's error rows: a `smsStatus.do` error code → an error.
pub fn sms_status_error(code: u32, description: &str) -> SendError {
    let detail = |meaning: &str| query_detail("smsStatus", code, meaning, description);
    match code {
        // Not in this table: the API's internal error code everywhere else.
        31 => SendError::transient(detail("internal error")),
        // "Echec d'authentification".
        32 => SendError::unusable(Code::BAD_CREDENTIALS, detail("authentication failed")),
        // "Paramètre(s) incorrect(s)".
        35 => SendError::permanent(Code::INTERNAL, detail("bad parameters")),
        // "smsID invalide".
        61 => SendError::permanent(Code::INTERNAL, detail("invalid smsID")),
        _ => SendError::permanent(Code::INTERNAL, detail("undocumented code")),
    }
}

fn query_detail(call: &str, code: u32, meaning: &str, description: &str) -> String {
    if description.is_empty() {
        format!("sMsmode {call} {code} ({meaning})")
    } else {
        format!("sMsmode {call} {code} ({meaning}): {description}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::FailureKind;

    #[test]
    fn the_documents_report_example() {
        assert_eq!(
            decode_compte_rendu("33600000000 11 | 33611111111 13"),
            Ok(vec![
                RecipientStatus {
                    number: "33600000000".into(),
                    status: Status::Received,
                },
                RecipientStatus {
                    number: "33611111111".into(),
                    status: Status::DeliveredToOperator,
                },
            ])
        );
        assert_eq!(decode_compte_rendu("\n"), Ok(vec![]));
        assert_eq!(
            decode_compte_rendu("33600000000 3998 |").unwrap()[0].status,
            Status::InvalidRecipient
        );
    }

    #[test]
    fn the_report_status_table() {
        let rows = [
            (0, Status::Sent, StatusKind::Pending),
            (2, Status::InternalError, StatusKind::Failed),
            (11, Status::Received, StatusKind::Delivered),
            (13, Status::DeliveredToOperator, StatusKind::Pending),
            (34, Status::RoutingError, StatusKind::Failed),
            (35, Status::ReceptionError, StatusKind::Failed),
        ];
        for (code, status, kind) in rows {
            let report = decode_compte_rendu(&format!("33600000000 {code}")).unwrap();
            assert_eq!(report[0].status, status, "{code}");
            assert_eq!(status.kind(), kind, "{code}");
        }
    }

    #[test]
    fn every_status_has_a_common_state() {
        use DeliveryState::{Accepted, Delivered, Expired, Unknown};
        let undelivered = |code: u32| DeliveryState::undelivered(Status::from_code(code).label());
        let rows = [
            (0, Accepted),
            (1, Accepted),
            (2, undelivered(2)),
            (10, Accepted),
            (11, Delivered),
            (12, undelivered(12)),
            (13, Accepted),
            (14, Delivered),
            (15, undelivered(15)),
            (16, Delivered),
            (21, undelivered(21)),
            (22, undelivered(22)),
            (33, undelivered(33)),
            (34, undelivered(34)),
            (35, undelivered(35)),
            (36, undelivered(36)),
            (37, Expired),
            (38, undelivered(38)),
            (39, undelivered(39)),
            (40, Unknown),
            (50, undelivered(50)),
            (100, Delivered),
            (101, Delivered),
            (999, Unknown),
            (3501, Accepted),
            (3502, Accepted),
            (3503, Accepted),
            (3504, Accepted),
            (3521, undelivered(3521)),
            (3522, undelivered(3522)),
            (3523, undelivered(3523)),
            (3524, undelivered(3524)),
            (3525, undelivered(3525)),
            (3526, undelivered(3526)),
            (3527, undelivered(3527)),
            (3560, undelivered(3560)),
            (3599, undelivered(3599)),
            (3998, undelivered(3998)),
            (3999, undelivered(3999)),
            (4242, Unknown),
        ];
        for (code, state) in rows {
            assert_eq!(Status::from_code(code).delivery_state(), state, "{code}");
        }
    }

    #[test]
    fn the_documents_examples_as_common_statuses() {
        let report = decode_compte_rendu("33600000000 11 | 33611111111 13").unwrap();
        let common: Vec<DeliveryStatus> = report.iter().map(|r| r.delivery("12345678")).collect();
        assert_eq!(
            common[0],
            DeliveryStatus {
                id: "12345678".into(),
                number: Some("33600000000".into()),
                state: DeliveryState::Delivered,
                provider_code: "11".into(),
                provider_text: "Reçu".into(),
                at: None,
            }
        );
        assert_eq!(common[1].state, DeliveryState::Accepted);
        assert_eq!(common[1].provider_code, "13");
        let status = decode_sms_status("0 | Envoyé")
            .unwrap()
            .delivery("12345678");
        assert_eq!(
            (
                status.state,
                status.provider_code.as_str(),
                status.provider_text.as_str()
            ),
            (DeliveryState::Accepted, "0", "Envoyé")
        );
    }

    #[test]
    fn the_report_error_table() {
        let rows = [
            (31, FailureKind::Transient, Code::INTERNAL),
            (32, FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS),
            (35, FailureKind::Permanent, Code::INTERNAL),
            (61, FailureKind::Permanent, Code::INTERNAL),
            (77, FailureKind::Permanent, Code::INTERNAL),
        ];
        for (code, kind, isendpro) in rows {
            for text in [format!("{code}"), format!("{code} | SMS n'existant pas")] {
                let e = decode_compte_rendu(&text).unwrap_err();
                assert_eq!((e.kind, e.code), (kind, isendpro), "{text}");
                assert!(
                    e.detail
                        .starts_with(&format!("sMsmode compteRendu {code} ("))
                );
            }
        }
        for text in ["<html>", "33600000000 x", "33600000000 11 12", "abc 11"] {
            assert!(
                decode_compte_rendu(text).unwrap_err().is_transient(),
                "{text}"
            );
        }
    }

    #[test]
    fn the_documents_status_example() {
        assert_eq!(
            decode_sms_status("0 | Envoyé"),
            Ok(SmsStatus {
                status: Status::Sent,
                description: "Envoyé".into()
            })
        );
    }

    #[test]
    fn the_status_table() {
        // Item 11's table: statuses…
        let statuses = [
            (0, Status::Sent),
            (2, Status::InternalError),
            (10, Status::Scheduled),
            (11, Status::Received),
            (13, Status::DeliveredToOperator),
            (39, Status::ReceptionError39),
            (3501, Status::TemporaryOperator),
            (3502, Status::TemporaryAbsence),
            (3503, Status::TemporaryHandset),
            (3521, Status::PermanentOperator),
            (3522, Status::PermanentAbsence),
            (3523, Status::PermanentHandset),
            (3524, Status::PermanentAntiSpam),
            (3525, Status::PermanentContent),
            (3526, Status::PermanentPortability),
            (3527, Status::PermanentRoaming),
            (3599, Status::OtherError),
            (3998, Status::InvalidRecipient),
            (3999, Status::Blacklisted),
        ];
        for (code, status) in statuses {
            let answer = decode_sms_status(&format!("{code} | texte")).unwrap();
            assert_eq!(answer.status, status, "{code}");
            assert_eq!(answer.description, "texte");
        }
        // …and errors.
        let errors = [
            (32, FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS),
            (35, FailureKind::Permanent, Code::INTERNAL),
            (61, FailureKind::Permanent, Code::INTERNAL),
            (31, FailureKind::Transient, Code::INTERNAL),
        ];
        for (code, kind, isendpro) in errors {
            let e = decode_sms_status(&format!("{code} | texte")).unwrap_err();
            assert_eq!((e.kind, e.code), (kind, isendpro), "{code}");
            assert!(e.detail.ends_with(": texte"), "{e:?}");
        }
        assert!(decode_sms_status("Envoyé").unwrap_err().is_transient());
    }

    #[test]
    fn the_annex_round_trips() {
        let annex = [
            0, 1, 2, 10, 11, 12, 13, 14, 15, 16, 21, 22, 33, 34, 35, 36, 37, 38, 50, 40, 100, 101,
            999, 3501, 3502, 3503, 3504, 3521, 3522, 3523, 3524, 3525, 3526, 3527, 3560, 3599,
            3998, 3999,
        ];
        for code in annex {
            let status = Status::from_code(code);
            assert!(!matches!(status, Status::Unknown(_)), "{code}");
            assert_eq!(status.code(), code);
        }
        assert_eq!(Status::from_code(4242), Status::Unknown(4242));
        assert_eq!(Status::Unknown(4242).code(), 4242);
    }

    #[test]
    fn failure_codes() {
        assert_eq!(
            Status::InvalidRecipient.failure_code(),
            Some(Code::BAD_NUMBER)
        );
        assert_eq!(Status::Blacklisted.failure_code(), Some(Code::BLACKLISTED));
        assert_eq!(Status::NoCredit.failure_code(), Some(Code::NO_CREDIT));
        assert_eq!(Status::Expired.failure_code(), Some(Code::INTERNAL));
        assert_eq!(Status::Received.failure_code(), None);
        assert_eq!(Status::TemporaryHandset.failure_code(), None);
        assert_eq!(Status::PartiallyReceived.kind(), StatusKind::Partial);
        assert_eq!(Status::Undefined.kind(), StatusKind::Unknown);
    }
}
