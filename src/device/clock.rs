//! Time for the device flow, behind a trait so the blocking poll (which
//! sleeps 5 s or more between polls) and token expiry can be tested without
//! waiting.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A boxed sleep, so [`Clock`] stays object-safe.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Wall-clock time and sleeping.
pub trait Clock: Send + Sync {
    /// Now, in unix milliseconds (stored expiries use the same unit).
    fn now_ms(&self) -> i64;
    /// Wait `duration`.
    fn sleep(&self, duration: Duration) -> Sleep<'_>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(duration))
    }
}
