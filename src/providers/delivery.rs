//! The one delivery-status type every provider's status call returns
//! (sMsmode `compteRendu.do` / `smsStatus.do`, smsfactor `getDr.php`,
//! SMSECO `getdlrs`, NetOxygen `get_status`): each adapter maps its
//! document's codes onto [`DeliveryState`] and keeps its own code and words
//! beside it, so nothing is lost for the log or a later reconciliation.

/// Where an SMS stands, in the words every document can be mapped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryState {
    /// The provider has it and it is on its way (queued, scheduled, handed
    /// to the operator, sent without a receipt yet).
    Accepted,
    /// The phone received it.
    Delivered,
    /// It will not be delivered; `reason` is the document's meaning of the
    /// provider's code.
    Undelivered {
        /// Why, in the document's words.
        reason: String,
    },
    /// Its validity ran out before the phone could take it.
    Expired,
    /// A code the document does not list, or one that says nothing about
    /// delivery: the provider's code and text say what it was.
    Unknown,
}

/// One SMS's delivery status, as a provider's status call reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryStatus {
    /// The SMS it is about: the provider's id for it (or for its send) as
    /// the answer gives it, else as it was asked for; for smsfactor our own
    /// reference (`gsmsmsid`), the one thing its reports carry.
    pub id: String,
    /// The recipient's number as the provider writes it, when the answer
    /// names one (a report may cover several numbers of one send).
    pub number: Option<String>,
    /// What the status means for the SMS.
    pub state: DeliveryState,
    /// The provider's own code, as written (`14`, `DELIVERED`, `56`; for
    /// NetOxygen `error/status`, its two codes), for logs and support.
    pub provider_code: String,
    /// The provider's own words for it (its answer's, else its document's).
    pub provider_text: String,
    /// When the provider says the status was reached, as it writes it, if
    /// it says (only SMSECO does).
    pub at: Option<String>,
}

impl DeliveryState {
    /// `Undelivered` with this reason.
    pub fn undelivered(reason: impl Into<String>) -> DeliveryState {
        DeliveryState::Undelivered {
            reason: reason.into(),
        }
    }

    /// Whether the state will not change any more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            DeliveryState::Delivered | DeliveryState::Undelivered { .. } | DeliveryState::Expired
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settled_states_are_final() {
        assert!(!DeliveryState::Accepted.is_final());
        assert!(!DeliveryState::Unknown.is_final());
        assert!(DeliveryState::Delivered.is_final());
        assert!(DeliveryState::Expired.is_final());
        assert!(DeliveryState::undelivered("Rejeté").is_final());
    }
}
