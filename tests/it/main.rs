//! The integration tests, one binary: each module is one former
//! `tests/*.rs` file; `common` holds what they share (a daemon on port 0, a
//! real SMTP client, mocks). One binary links once instead of once per file.

mod common;

mod alert_e2e;
mod alert_store;
mod alerts;
mod bodies;
mod cli;
mod crash;
mod dispatch;
mod failover;
mod ingress;
mod memory_bomb;
mod module_cycles;
mod postfix;
mod postfix_instance;
mod provider_contract;
mod provider_netoxygen;
mod provider_smseco;
mod provider_smsfactor;
mod provider_smsmode;
mod replies;
mod requests;
mod restart;
mod rules;
mod smtp_memory;
mod smtp_security;
mod spec_examples;
mod store_contract;
mod store_faults;
mod store_rules;
