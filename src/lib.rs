//! mail2sms: an email-to-SMS bridge speaking iSendPro's "mail 2 SMS"
//! protocol.
//!
//! Data flows one way: `smtp` → `mail` (MIME) → `request` (`<envoi>`, CSV
//! merge) → `rules` → `store` → `dispatch` → `providers` → `replies`.
//! `pipeline` is the one path from a received email to a stored request, and
//! `app` wires the parts into a daemon.

pub(crate) mod address;
pub mod app;
pub(crate) mod calendar;
pub mod clock;
pub mod codes;
pub mod config;
pub mod dispatch;
pub(crate) mod gsm;
pub(crate) mod logsafe;
pub(crate) mod mail;
pub mod net;
pub(crate) mod pipeline;
pub mod providers;
pub mod replies;
pub mod request;
pub(crate) mod rules;
pub(crate) mod secrets;
pub mod shutdown;
pub mod smtp;
pub mod store;
pub mod xml;
