//! The RCPT check of alert mail (issue 10): a local part that looks like a
//! phone number must be one (`550 5.1.1` naming the reason), and a client
//! that no alert account allows is refused at once (`550 5.7.1`), so the
//! sending MTA bounces at once rather than after DATA. Cheap: it runs on
//! the session's task (libphonenumber is warmed at start).

use super::{NOT_AUTHORIZED, Pipeline, admit};
use crate::logsafe::Safe;
use crate::request::alert::address;
use crate::smtp::{Envelope, Reply, Unauthorized};

impl Pipeline {
    /// Checks one RCPT address of our domains; anything that does not
    /// look like a number passes (it may be a group or an `<envoi>`
    /// address, read at the end of DATA).
    pub(super) fn check_recipient(&self, envelope: &Envelope, to: &str) -> Result<(), Reply> {
        if self.alerts.is_empty() {
            return Ok(());
        }
        let Some(local) = self.alerts.number_local(to) else {
            return Ok(());
        };
        // The AUTH user's account, if it names one; else every alert
        // account is a candidate.
        let user_account = envelope
            .auth_user
            .as_ref()
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
        if self.unauthorized == Unauthorized::Discard {
            // Refusing here would bounce: the message is discarded at DATA.
            return Ok(());
        }
        let client = Some(envelope.peer.ip());
        let allowed = candidates
            .iter()
            .any(|a| a.config.alerts && admit::allows(&a.config, client));
        if !allowed {
            tracing::info!(to = %Safe(to), ?client, "RCPT refused: no alert account allows this client");
            return Err(Reply::new(550, "5.7.1", NOT_AUTHORIZED));
        }
        Ok(())
    }
}
