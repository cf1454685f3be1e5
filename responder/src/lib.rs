//! keyburn-responder: everything that talks to the outside world (see
//! DESIGN.md). Built so far: the webhook signature check, the durable job
//! queue and the audit log; the service, the GitHub client and the
//! providers build on them.

pub mod audit;
pub mod queue;
pub mod signature;
