//! Strict retry-after accounting shared by the platform emulators: once an
//! emulator has answered 429 with a retry-after for a bucket, every request
//! for that bucket arriving before the retry-after has passed is a
//! violation — counted, with how early it was, and answered 429 again, as
//! strict platforms do (Telegram and Discord may extend or ban).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One request that arrived inside a retry-after.
#[derive(Debug, Clone)]
pub struct Early {
    /// The bucket it was for.
    pub bucket: String,
    /// How long before the retry-after ended it arrived.
    pub early_by: Duration,
}

/// Retry-afters in force, by bucket, and the requests that ignored them.
#[derive(Debug, Default)]
pub struct Lockouts {
    until: HashMap<String, Instant>,
    /// Every early request so far.
    pub early: Vec<Early>,
}

impl Lockouts {
    /// A request for `bucket` arrived: `Some(left)` when a retry-after
    /// told for it has `left` to run (a violation, recorded).
    pub fn arrived(&mut self, bucket: &str, now: Instant) -> Option<Duration> {
        let until = *self.until.get(bucket)?;
        if until <= now {
            self.until.remove(bucket);
            return None;
        }
        let left = until - now;
        self.early.push(Early {
            bucket: bucket.to_owned(),
            early_by: left,
        });
        Some(left)
    }

    /// The emulator told a client to wait `retry_after` for `bucket`.
    pub fn told(&mut self, bucket: &str, now: Instant, retry_after: Duration) {
        let until = now + retry_after;
        let entry = self.until.entry(bucket.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }
}
