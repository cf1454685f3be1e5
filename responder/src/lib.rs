//! keyburn-responder: everything that talks to the outside world (see
//! DESIGN.md): the `keyburn serve` webhook service, its durable queue and
//! workers, the GitHub client, the providers that validate and revoke
//! secrets, notifications and the audit log.

pub mod audit;
pub mod config;
pub mod datadir;
pub mod github;
pub mod http;
pub mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
pub mod notify;
pub mod partner;
pub mod providers;
pub mod queue;
pub mod server;
pub mod signature;
#[cfg(feature = "mock")]
pub mod testdb;
pub mod worker;
