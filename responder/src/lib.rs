//! keyburn-responder: validation, revocation and the webhook service (see DESIGN.md). Filled by the responder issue.
