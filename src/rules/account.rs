//! `[accounts.NAME]`: one customer of the bridge, and the checks of its
//! settings, next to the rules they configure.

use crate::net::Networks;
use crate::{gsm, request};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[accounts.NAME]`: one customer of the bridge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The `<keyid>` that selects this account.
    pub keyid: String,
    /// Who may send for it: full addresses (`ops@example.com`) or whole
    /// domains (`@example.com`), compared without case.
    pub senders: Vec<String>,
    /// Provider names, in failover order.
    pub providers: Vec<String>,
    /// The country national numbers are read in (ISO code).
    #[serde(default = "default_region")]
    pub region: String,
    /// The sender id used when an email gives no `<emetteur>`; providers
    /// that need one (smsfactor) refuse SMS with neither (code 16).
    #[serde(default)]
    pub default_sender_id: Option<String>,
    /// The sender ids an email may ask for with `<emetteur>`; empty: any
    /// valid one (4 to 11 letters and digits, not only digits). Others get
    /// code 33.
    #[serde(default)]
    pub sender_ids: Vec<String>,
    /// Characters outside GSM-7: `auto` sends the SMS in UCS-2 (70
    /// characters a segment), `transliterate` replaces them with the nearest
    /// GSM-7 character (`ë` → `e`, 160 a segment).
    #[serde(default)]
    pub unicode: UnicodeMode,
    /// The most segments one SMS may take when the email gives no
    /// `<smslong>` (which may only lower it); longer texts are refused for
    /// that recipient (code 999), never cut.
    #[serde(default = "default_max_segments")]
    pub max_segments: u32,
    /// Commercial traffic: the STOP mention is appended when a sender id is
    /// used, and quiet hours apply.
    #[serde(default)]
    pub commercial: bool,
    /// The STOP mention appended to commercial SMS sent with a sender id,
    /// e.g. `STOP SMS au 36111` (required when `commercial = true`).
    #[serde(default)]
    pub stop_text: Option<String>,
    /// Whether `<nostop>1</nostop>` may remove the STOP mention (for
    /// accounts whose traffic was approved as non-commercial in practice).
    #[serde(default)]
    pub nostop_allowed: bool,
    /// Commercial SMS between 20:00 and 08:00 Paris time, on Sundays and
    /// French public holidays: `reject` refuses them when the email arrives
    /// (code 24, the spec's behaviour); `defer` keeps them and sends them at
    /// the next allowed minute.
    #[serde(default)]
    pub quiet_hours: QuietHours,
    /// Destination countries allowed (ISO codes); absent: all. Others get
    /// code 27.
    #[serde(default)]
    pub countries: Option<Vec<String>>,
    /// Keep a credit balance in the store, debited per segment sent
    /// (`mail2sms credits add`); at 0, SMS are refused with code 12.
    #[serde(default)]
    pub credits: bool,
    /// The most SMS accepted per rolling minute; beyond, code 29.
    #[serde(default)]
    pub max_per_minute: Option<u32>,
    /// The most SMS accepted per day (Paris calendar day); beyond, code 29.
    #[serde(default)]
    pub max_per_day: Option<u32>,
    /// Client addresses allowed to send for this account (CIDR list, both
    /// `<envoi>` and alert mail); absent: any. `<envoi>` mail from elsewhere
    /// is refused with code 14; alert mail with `550 5.7.1`.
    #[serde(default)]
    pub networks: Option<Networks>,
    /// Takes alert mail: any email to `NUMBER@domain` or `GROUP@domain`
    /// without an `<envoi>` block becomes an SMS (issue 10). Not with
    /// `commercial`.
    #[serde(default)]
    pub alerts: bool,
    /// Named groups of numbers alert mail can be addressed to
    /// (`oncall = ["+33601020304", "0601020305"]`).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// A TOML file of more groups (top-level `name = [numbers]`), re-read on
    /// SIGHUP; a name in both is an error.
    #[serde(default)]
    pub groups_file: Option<PathBuf>,
    /// A minijinja template replacing the default alert text (subject, line
    /// break, cleaned body); it sees `subject`, `body`, `from`, `to`, `date`.
    #[serde(default)]
    pub alert_template: Option<String>,
    /// Seconds an alert's Message-ID (MTA retries) and each text sent to a
    /// number (storms) are remembered: a repeat within them sends nothing.
    #[serde(default = "default_alert_dedup_secs")]
    pub alert_dedup_secs: u64,
    /// The most alert SMS one number gets per rolling hour; the rest are
    /// held back and counted in the next one that goes. Absent: no cap.
    #[serde(default)]
    pub alert_max_per_hour: Option<u32>,
    /// Whether a delivery status notification (RFC 3464) goes to the
    /// envelope sender of an alert when one of its SMS failed.
    #[serde(default = "default_true")]
    pub alert_failure_notice: bool,
}

fn default_alert_dedup_secs() -> u64 {
    3600
}

fn default_true() -> bool {
    true
}

pub use crate::gsm::UnicodeMode;

/// `quiet_hours` of an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuietHours {
    /// Refused with code 24 when the email arrives in quiet hours.
    #[default]
    Reject,
    /// Kept and sent at the next allowed minute.
    Defer,
}

fn default_max_segments() -> u32 {
    6
}

fn default_region() -> String {
    "FR".into()
}

/// A key of the account's table and what is wrong with its value.
pub type Invalid = (&'static str, String);

impl AccountConfig {
    /// Checks the account's own settings (not whether its providers exist:
    /// that crosses tables, `config` does it). The error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.keyid.trim().is_empty() {
            return Err(("keyid", "must not be empty".into()));
        }
        self.validate_senders()?;
        if self.providers.is_empty() {
            return Err(("providers", "at least one provider is needed".into()));
        }
        self.validate_sender_ids()?;
        if !(1..=255).contains(&self.max_segments) {
            return Err(("max_segments", "must be between 1 and 255".into()));
        }
        self.validate_stop_text()?;
        self.validate_countries()?;
        if self.max_per_minute == Some(0) {
            return Err(("max_per_minute", "must be at least 1".into()));
        }
        if self.max_per_day == Some(0) {
            return Err(("max_per_day", "must be at least 1".into()));
        }
        if self.alerts && self.commercial {
            return Err((
                "alerts",
                "an alert account cannot be commercial: alerts are not advertising (no STOP mention, no quiet hours)".into(),
            ));
        }
        if self.alert_max_per_hour == Some(0) {
            return Err(("alert_max_per_hour", "must be at least 1".into()));
        }
        self.validate_alert_keys()
    }

    /// The alert keys: only on an alert account, with a template that
    /// compiles and groups (table and file) whose numbers are valid.
    fn validate_alert_keys(&self) -> Result<(), Invalid> {
        if !self.alerts {
            let set = [
                ("groups", !self.groups.is_empty()),
                ("groups_file", self.groups_file.is_some()),
                ("alert_template", self.alert_template.is_some()),
            ];
            if let Some((key, _)) = set.into_iter().find(|(_, set)| *set) {
                return Err((key, "only alert accounts use it: set alerts = true".into()));
            }
            return Ok(());
        }
        request::alert::check_account(&self.alert_settings())
    }

    /// What the alert reader needs of this account.
    pub fn alert_settings(&self) -> request::alert::AlertSettings {
        request::alert::AlertSettings {
            region: self.region.clone(),
            unicode: self.unicode,
            max_segments: self.max_segments,
            groups: self.groups.clone(),
            groups_file: self.groups_file.clone(),
            alert_template: self.alert_template.clone(),
        }
    }

    /// Who may send: addresses or `@domain`s, at least one.
    fn validate_senders(&self) -> Result<(), Invalid> {
        if self.senders.is_empty() {
            return Err((
                "senders",
                "at least one address or @domain is needed".into(),
            ));
        }
        match self.senders.iter().find(|s| !super::valid_sender_rule(s)) {
            Some(sender) => Err((
                "senders",
                format!("`{sender}` is neither an address nor @domain"),
            )),
            None => Ok(()),
        }
    }

    /// The default sender id and the allowed ones are valid sender ids, and
    /// the default is one of the allowed.
    fn validate_sender_ids(&self) -> Result<(), Invalid> {
        if let Some(id) = &self.default_sender_id
            && let Err(reason) = super::check_sender_id(id)
        {
            return Err(("default_sender_id", reason.into()));
        }
        for id in &self.sender_ids {
            if let Err(reason) = super::check_sender_id(id) {
                return Err(("sender_ids", format!("`{id}`: {reason}")));
            }
        }
        if let Some(id) = &self.default_sender_id
            && !self.sender_ids.is_empty()
            && !self.sender_ids.contains(id)
        {
            return Err(("default_sender_id", "must be one of sender_ids".into()));
        }
        Ok(())
    }

    /// Commercial accounts carry a STOP mention that fits and stays GSM-7.
    fn validate_stop_text(&self) -> Result<(), Invalid> {
        if !self.commercial {
            return Ok(());
        }
        let Some(stop) = self.stop_text.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Err((
                "stop_text",
                "commercial accounts need the STOP mention, e.g. \"STOP SMS au 36111\"".into(),
            ));
        };
        if self.unicode == UnicodeMode::Auto && !gsm::is_gsm7(stop) {
            return Err((
                "stop_text",
                "has characters outside GSM-7 (curly quotes, accents like ê): every commercial SMS would go in UCS-2, 70 characters a segment; write it in GSM-7 or set unicode = \"transliterate\"".into(),
            ));
        }
        if gsm::segments(&format!("x {stop}")).count > self.max_segments {
            return Err((
                "stop_text",
                "leaves no room for the message within max_segments".into(),
            ));
        }
        Ok(())
    }

    /// The region and the allowed countries are country codes.
    fn validate_countries(&self) -> Result<(), Invalid> {
        if let Some(countries) = &self.countries {
            if countries.is_empty() {
                return Err((
                    "countries",
                    "an empty list would refuse every number; remove the key to allow all".into(),
                ));
            }
            if let Some(c) = countries
                .iter()
                .find(|c| !request::phone::is_valid_region(c))
            {
                return Err(("countries", format!("`{c}` is not a country code like FR")));
            }
        }
        if !request::phone::is_valid_region(&self.region) {
            return Err((
                "region",
                format!("`{}` is not a country code like FR", self.region),
            ));
        }
        Ok(())
    }
}
