//! The iSendPro protocol's codes: the per-SMS error codes of the spec's annex
//! (reported in `etatNot`) and the three `etatAck` codes.
//!
//! Everything that can fail for one SMS (a bad number, a provider refusal, a
//! rule) ends up as one of these codes, so that etatNot always speaks the
//! protocol the sender knows.

use serde::{Deserialize, Serialize};

/// One code of the annex's "Tableau Code Erreur".
///
/// A newtype rather than an enum: provider adapters map their own codes onto
/// it, and a value read back from the store must survive even if a later
/// version adds codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Code(pub u16);

impl Code {
    /// 0: the message was sent.
    pub const SENT: Code = Code(0);
    /// 3: the provider rejected our credentials.
    pub const BAD_CREDENTIALS: Code = Code(3);
    /// 6: no phone number given.
    pub const NO_NUMBER: Code = Code(6);
    /// 7: the phone number is not a valid number.
    pub const BAD_NUMBER: Code = Code(7);
    /// 11: the number is on the opt-out (black) list.
    pub const BLACKLISTED: Code = Code(11);
    /// 12: no credit left.
    pub const NO_CREDIT: Code = Code(12);
    /// 14: IP address not allowed.
    pub const IP_NOT_ALLOWED: Code = Code(14);
    /// 16: a sender id is required and none was given.
    pub const EMPTY_SENDER: Code = Code(16);
    /// 21: the number is not assigned.
    pub const NOT_ASSIGNED: Code = Code(21);
    /// 22: the number belongs to a full MVNO.
    pub const FULL_MVNO: Code = Code(22);
    /// 23: more than 500 numbers in one request.
    pub const TOO_MANY_NUMBERS: Code = Code(23);
    /// 24: commercial traffic during quiet hours.
    pub const QUIET_HOURS: Code = Code(24);
    /// 27: destination country not allowed.
    pub const COUNTRY_NOT_ALLOWED: Code = Code(27);
    /// 29: overflow (rate limits).
    pub const OVERFLOW: Code = Code(29);
    /// 30: connection domain error.
    pub const DOMAIN: Code = Code(30);
    /// 33: sender id not allowed.
    pub const SENDER_NOT_ALLOWED: Code = Code(33);
    /// 34: `smslong` is not an integer.
    pub const SMSLONG_NOT_INTEGER: Code = Code(34);
    /// 999: any other error.
    pub const INTERNAL: Code = Code(999);

    /// The annex's message for this code (UTF-8; the replies encode it in
    /// ISO-8859-1). Codes the annex does not list get the 999 message.
    pub fn message(self) -> &'static str {
        match self.0 {
            0 => "Votre message a bien été envoyé",
            1 => "Le champ Login est vide",
            2 => "Le champ PWD est vide",
            3 => "Vos identifiants sont incorrects",
            6 => "Vous devez saisir un numéro de téléphone",
            7 => "Un numéro de téléphone est sur 10 chiffres",
            11 => "Le numéro de téléphone est dans la liste noire",
            12 => "Votre crédit de MT est épuisé",
            14 => "L'adresse IP n'est pas autorisée",
            16 => "L'émetteur ne peut pas être vide",
            21 => "Le numéro de téléphone n'est pas attribué",
            22 => "Le téléphone est attribué à un Full MVNO",
            23 => "Le nombre maximum de téléphones par requête est de 500",
            24 => "Pas d'envoi commercial entre 20h et 08h, ni les dimanches et jours fériés",
            27 => "L'indicatif pays du téléphone n'est pas autorisé !",
            29 => "Nous ne pouvons donner suite à votre demande (overflow)",
            30 => "Erreur sur le domaine de connexion",
            33 => "Cet émetteur n'est pas autorisé!",
            34 => "La valeur de smslong doit être un entier !",
            100 => "Vous devez saisir un type d'appel valide",
            101 => "Les appels répondeurs ne fonctionnent pas avec les numéros de fixe !",
            102 => "Vous devez saisir un fichier valide !",
            103 => "L'émetteur doit être sur 10 chiffres !",
            104 => "L'émetteur ne doit comporter que des chiffres !",
            105 => "L'émetteur ne peut pas être un numéro en 08,",
            106 => "Seuls les fichiers .wma, .wav sont acceptés !",
            107 => "Votre fichier dépasse 30 secondes !",
            1000 => "Le fichier a bien été importé",
            _ => "Une erreur est survenue. Merci de contacter le service technique",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The `etatAck` codes: whether the email itself was processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckCode {
    /// 0: the email was read and processed.
    Processed,
    /// 1: an email with the same emailId was already processed.
    Duplicate,
    /// 2: the email had no emailId.
    MissingEmailId,
}

impl AckCode {
    /// The numeric code written in `<code>`.
    pub fn number(self) -> u16 {
        match self {
            AckCode::Processed => 0,
            AckCode::Duplicate => 1,
            AckCode::MissingEmailId => 2,
        }
    }

    /// The code for a number read back from the store.
    pub fn from_number(n: u16) -> Option<AckCode> {
        match n {
            0 => Some(AckCode::Processed),
            1 => Some(AckCode::Duplicate),
            2 => Some(AckCode::MissingEmailId),
            _ => None,
        }
    }

    /// The spec's `messageAck` (ASCII, as the spec writes it).
    pub fn message(self) -> &'static str {
        match self {
            AckCode::Processed => "Votre email a bien ete traite",
            AckCode::Duplicate => "emailId deja traite",
            AckCode::MissingEmailId => "emailId non renseigne",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_messages() {
        assert_eq!(Code::SENT.message(), "Votre message a bien été envoyé");
        assert_eq!(
            Code::TOO_MANY_NUMBERS.message(),
            "Le nombre maximum de téléphones par requête est de 500"
        );
        assert_eq!(Code(4242).message(), Code::INTERNAL.message());
    }

    #[test]
    fn ack_codes_round_trip() {
        for c in [
            AckCode::Processed,
            AckCode::Duplicate,
            AckCode::MissingEmailId,
        ] {
            assert_eq!(AckCode::from_number(c.number()), Some(c));
        }
        assert_eq!(AckCode::Duplicate.message(), "emailId deja traite");
    }
}
