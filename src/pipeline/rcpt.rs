//! The RCPT check of alert mail (issue 10): a local part that looks like a
//! phone number must be one (`550 5.1.1` naming the reason), so the sending
//! MTA bounces at once rather than after DATA; `mail2sms deliver` applies
//! it to its recipients too. Who may send is not checked here: a message to
//! a number may still carry an `<envoi>` block (read as today whatever its
//! recipients, code 14 from outside the account's `networks`), which only
//! DATA shows. Cheap: it runs on the session's task (libphonenumber is
//! warmed at start).

use super::Pipeline;
use crate::logsafe::Safe;
use crate::request::alert::address;
use crate::smtp::Reply;

impl Pipeline {
    /// Checks one recipient address of our domains, for a client
    /// authenticated as `auth_user` (its account's region reads national
    /// numbers; else any alert account's); anything that does not look like
    /// a number passes (it may be a group or an `<envoi>` address, read at
    /// the end of DATA).
    pub fn check_recipient(&self, auth_user: Option<&str>, to: &str) -> Result<(), Reply> {
        if self.alerts.is_empty() {
            return Ok(());
        }
        let Some(local) = self.alerts.number_local(to) else {
            return Ok(());
        };
        // The AUTH user's account, if it names one; else every alert
        // account is a candidate.
        let user_account = auth_user
            .and_then(|user| self.ingress.users.get(user))
            .and_then(|name| self.ingress.by_name.get(name));
        let candidates: Vec<_> = match user_account {
            Some(account) => vec![account.clone()],
            None => self
                .ingress
                .by_name
                .values()
                .filter(|a| a.config.alerts)
                .cloned()
                .collect(),
        };
        let mut reason = None;
        let valid = candidates.iter().any(|a| {
            address::number(local, &a.config.region)
                .map_err(|e| reason = reason.or(Some(e)))
                .is_ok()
        });
        if !valid {
            let reason = reason.unwrap_or("not a valid phone number");
            tracing::info!(to = %Safe(to), reason, "RCPT refused: not a valid phone number");
            return Err(Reply::new(
                550,
                "5.1.1",
                format!("not a valid phone number: {reason}"),
            ));
        }
        Ok(())
    }
}
