//! Alert mail (issue 10): an email without an `<envoi>` block, addressed
//! to `NUMBER@DOMAIN` or `GROUP@DOMAIN` for a domain of `smtp.domains`,
//! becomes one SMS per distinct number. [`AlertReader`] is the second
//! request reader, after `<envoi>`; [`AlertBook`] holds what it needs of
//! the alert accounts (regions, groups, templates), shared with the
//! pipeline for the RCPT check and the re-reading of groups on SIGHUP.
//!
//! An alert names no account: who may send it is decided by the pipeline
//! (`pipeline/admit.rs`), before it is built for that account.

pub mod address;
pub mod groups;
pub mod text;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::{BuildContext, Envelope, Expansion, Limits, RawRecipient, Request, RequestError};
use super::{PhoneNumber, RequestHead, RequestReader};
use crate::codes::Code;
use crate::gsm::UnicodeMode;
use crate::logsafe::Safe;
use crate::mail::ParsedMail;
use address::Local;
use groups::Groups;
use text::{Fields, Template};

/// Bytes a text can take once cut, per segment (160 characters of up to
/// 4 bytes each): what one alert SMS can cost at most.
const BYTES_PER_SEGMENT: usize = 160 * 4;

/// What alert mail needs to know of the accounts that take it.
#[derive(Debug)]
pub struct AlertBook {
    /// `smtp.domains`, lowercased: only recipients there name numbers or
    /// groups.
    domains: Vec<String>,
    /// The accounts with `alerts = true`, by name.
    accounts: BTreeMap<String, AlertAccount>,
}

/// One alert account, as its alerts are read and written.
#[derive(Debug)]
pub struct AlertAccount {
    /// The country national numbers are read in.
    pub region: String,
    /// Whether its texts are transliterated (before the cut).
    unicode: UnicodeMode,
    /// The most segments one alert SMS takes: longer texts are cut.
    max_segments: u32,
    /// `alert_template`, compiled; `None`: the default text.
    template: Option<Template>,
    /// The `groups` table, merged again with the file on each re-read.
    inline: BTreeMap<String, Vec<String>>,
    /// `groups_file`, re-read on SIGHUP.
    groups_file: Option<PathBuf>,
    /// The groups in force; replaced whole when the file is re-read, so a
    /// message being built keeps the ones it started with.
    groups: RwLock<Arc<Groups>>,
}

/// What the alert reader needs of one account's `[accounts.NAME]` table:
/// built by `rules` (`AccountConfig::alert_settings`), so that reading a
/// request stays upstream of the rules.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// The country national numbers are read in.
    pub region: String,
    /// Whether texts are transliterated to GSM-7 (before the cut).
    pub unicode: UnicodeMode,
    /// The most segments one alert SMS takes: longer texts are cut.
    pub max_segments: u32,
    /// The `groups` table.
    pub groups: BTreeMap<String, Vec<String>>,
    /// `groups_file`, re-read on SIGHUP.
    pub groups_file: Option<PathBuf>,
    /// `alert_template`'s source.
    pub alert_template: Option<String>,
}

impl AlertBook {
    /// The book of these alert accounts (those with `alerts = true`, by
    /// name) for these recipient domains. The config was validated: a
    /// template or groups that fail now (a file changed since) are logged,
    /// and that account falls back to the default text or its `groups`
    /// table alone.
    pub fn new(
        accounts: impl IntoIterator<Item = (String, AlertSettings)>,
        domains: &[String],
    ) -> AlertBook {
        let accounts = accounts
            .into_iter()
            .map(|(name, a)| {
                let account = AlertAccount::new(&name, a);
                (name, account)
            })
            .collect();
        AlertBook {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            accounts,
        }
    }

    /// No account takes alert mail: the reader and the RCPT check stand
    /// aside, and mail without `<envoi>` is refused as before.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The alert account `name`, if it takes alert mail.
    pub fn account(&self, name: &str) -> Option<&AlertAccount> {
        self.accounts.get(name)
    }

    /// Whether any account has a `groups_file` (the SIGHUP task is then
    /// worth running).
    pub fn has_groups_files(&self) -> bool {
        self.accounts.values().any(|a| a.groups_file.is_some())
    }

    /// Re-reads every `groups_file`: an account whose file (or groups) is
    /// now bad keeps its old groups, and the error is logged and returned
    /// (one line per account).
    pub fn reload_groups(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, account) in &self.accounts {
            let Some(file) = &account.groups_file else {
                continue;
            };
            match groups::load(&account.inline, Some(file), &account.region) {
                Ok(new) => {
                    let count = new.len();
                    *account.groups.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
                    tracing::info!(account = %name, groups = count, file = %file.display(), "groups re-read");
                }
                Err(e) => {
                    tracing::error!(account = %name, error = %e, "groups file not re-read; the old groups stay");
                    errors.push(format!("accounts.{name}.groups_file: {e}"));
                }
            }
        }
        errors
    }

    /// Whether `address` is one of our domains' addresses whose local part
    /// looks like a number: `Some(local)` then.
    pub fn number_local<'a>(&self, address: &'a str) -> Option<&'a str> {
        let (local, domain) = address::split(address)?;
        (address::is_ours(domain, &self.domains) && address::looks_like_number(local))
            .then_some(local)
    }

    /// Whether `name` is a group of any alert account.
    fn is_any_group(&self, name: &str) -> bool {
        self.accounts
            .values()
            .any(|a| a.groups().contains_key(name))
    }

    /// The largest `max_segments` and group of the alert accounts.
    fn largest(&self) -> (usize, usize) {
        self.accounts.values().fold((1, 1), |(segments, group), a| {
            let biggest = a.groups().values().map(Vec::len).max().unwrap_or(1);
            (segments.max(a.max_segments as usize), group.max(biggest))
        })
    }
}

impl AlertAccount {
    /// The alert side of account `name`.
    fn new(name: &str, config: AlertSettings) -> AlertAccount {
        let template = config.alert_template.as_deref().and_then(|source| {
            Template::compile(source)
                .inspect_err(|e| {
                    tracing::error!(account = %name, error = %e, "alert_template does not compile; the default text is used");
                })
                .ok()
        });
        let file = config.groups_file.as_deref();
        let groups = groups::load(&config.groups, file, &config.region).unwrap_or_else(|e| {
            tracing::error!(account = %name, error = %e, "groups cannot be read; only the groups table is used");
            groups::check(&config.groups, &config.region).unwrap_or_default()
        });
        AlertAccount {
            region: config.region,
            unicode: config.unicode,
            max_segments: config.max_segments,
            template,
            inline: config.groups,
            groups_file: config.groups_file,
            groups: RwLock::new(Arc::new(groups)),
        }
    }

    /// The groups in force.
    fn groups(&self) -> Arc<Groups> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The text of an alert for one recipient address: the template's, or
    /// the default, then cut.
    fn text(&self, fields: &Fields) -> Result<String, RequestError> {
        let text = match &self.template {
            Some(template) => template
                .render(fields)
                .map_err(|reason| RequestError::AlertTemplate { reason })?,
            None => text::default_text(fields),
        };
        Ok(text::cut(&text, self.unicode, self.max_segments))
    }
}

/// Checks an account's alert keys (compiled template, groups and their
/// file): the error names the key, for the configuration check.
pub fn check_account(config: &AlertSettings) -> Result<(), (&'static str, String)> {
    if let Some(source) = &config.alert_template {
        Template::compile(source).map_err(|e| ("alert_template", e))?;
    }
    groups::check(&config.groups, &config.region).map_err(|e| ("groups", e))?;
    groups::load(
        &config.groups,
        config.groups_file.as_deref(),
        &config.region,
    )
    .map_err(|e| ("groups_file", e))?;
    Ok(())
}

/// Reads alert mail: the recipients of our domains that name numbers or
/// groups, when the email has no `<envoi>` block.
#[derive(Debug)]
pub struct AlertReader {
    /// The alert accounts (shared with the pipeline).
    book: Arc<AlertBook>,
}

impl AlertReader {
    /// A reader over `book`.
    pub fn new(book: Arc<AlertBook>) -> AlertReader {
        AlertReader { book }
    }
}

impl RequestReader for AlertReader {
    fn head(
        &self,
        envelope: &Envelope,
        mail: &ParsedMail,
    ) -> Result<Box<dyn RequestHead>, RequestError> {
        let absent = || {
            if mail.html_only {
                RequestError::HtmlOnly
            } else {
                RequestError::NoEnvoi
            }
        };
        if self.book.is_empty() {
            return Err(absent());
        }
        let targets: Vec<(String, Local)> = envelope
            .recipients
            .iter()
            .filter_map(|to| {
                let (local, domain) = address::split(to)?;
                address::is_ours(domain, &self.book.domains)
                    .then(|| (to.clone(), address::classify(local)))
            })
            .collect();
        let names = || {
            targets.iter().filter_map(|(_, l)| match l {
                Local::Name(name) => Some(name),
                Local::Number(_) => None,
            })
        };
        let numbers = targets.iter().any(|(_, l)| matches!(l, Local::Number(_)));
        if !numbers && !names().any(|n| self.book.is_any_group(n)) {
            return match names().next() {
                Some(name) => Err(RequestError::NoSuchGroup { name: name.clone() }),
                None => Err(absent()),
            };
        }
        let from = mail
            .from
            .clone()
            .unwrap_or_else(|| envelope.mail_from.clone());
        Ok(Box::new(AlertHead {
            book: self.book.clone(),
            targets,
            from,
        }))
    }
}

/// An alert read before its account is known.
struct AlertHead {
    /// The alert accounts, for the account's region, groups and text.
    book: Arc<AlertBook>,
    /// Each recipient address of our domains, in order, and what its local
    /// part names.
    targets: Vec<(String, Local)>,
    /// The `From:` address, else the envelope sender (the template's
    /// `from`).
    from: String,
}

impl RequestHead for AlertHead {
    fn keyid(&self) -> Option<&str> {
        None
    }

    fn expansion_bound(&self, mail: &ParsedMail, _limits: &Limits) -> Expansion {
        let (segments, group) = self.book.largest();
        let recipients = self.targets.len().saturating_mul(group);
        let longest = segments.saturating_mul(BYTES_PER_SEGMENT);
        Expansion {
            recipients,
            text_bytes: recipients.saturating_mul(longest),
            // Cleaning reads the whole body once per address.
            longest_text: longest.max(mail.text.len()),
        }
    }

    fn build(
        self: Box<Self>,
        mail: &ParsedMail,
        context: &BuildContext<'_>,
    ) -> Result<Request, RequestError> {
        let account = self
            .book
            .account(context.account)
            .ok_or(RequestError::NoEnvoi)?;
        let groups = account.groups();
        let mut fields = Fields {
            subject: mail.subject.clone().unwrap_or_default(),
            body: text::clean_body(&mail.text),
            from: self.from.clone(),
            to: String::new(),
            date: text::paris_date(mail.date.unwrap_or(context.received)),
        };
        let mut recipients = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (to, local) in &self.targets {
            let numbers: &[String] = match local {
                Local::Number(written) => std::slice::from_ref(written),
                Local::Name(name) => groups
                    .get(name)
                    .ok_or_else(|| RequestError::NoSuchGroup { name: name.clone() })?,
            };
            fields.to.clone_from(to);
            let text = account.text(&fields)?;
            for tel in numbers {
                // One SMS per distinct number: the first address's text wins.
                let key = PhoneNumber::parse(tel, &account.region)
                    .map_or_else(|_| tel.clone(), |n| n.as_str().to_owned());
                if seen.insert(key) {
                    recipients.push(RawRecipient {
                        tel: tel.clone(),
                        text: text.clone(),
                    });
                }
            }
        }
        tracing::debug!(
            account = %context.account,
            from = %Safe(&self.from),
            numbers = recipients.len(),
            "alert read"
        );
        Ok(Request {
            keyid: String::new(),
            email_id: None,
            email_ack: None,
            email_not: None,
            sender_id: None,
            tracker: None,
            smslong: None,
            nostop: false,
            recipients: if recipients.is_empty() {
                Err(Code::NO_NUMBER)
            } else {
                Ok(recipients)
            },
        })
    }
}

#[cfg(test)]
mod tests;
