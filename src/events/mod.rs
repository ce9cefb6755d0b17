//! Events from the platform: the envelope, the dedup ledger, the router
//! every event goes through, and the HTTP callback (webhook) path.

pub mod envelope;
pub mod ledger;
pub mod router;
