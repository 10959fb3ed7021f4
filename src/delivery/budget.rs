//! Token buckets: how a channel actor spends a platform's rate limits
//! without earning a 429. Fed by the adapter's declared `Limits` and by the
//! retry-after of rate-limited outcomes.

use std::sync::Arc;
use std::time::Duration;

use herald_messaging::Rate;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A token bucket holding at most `rate.count` tokens, refilled evenly over
/// `rate.per`. Starting full lets a quiet channel send a burst at once.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_token: Duration,
    tokens: f64,
    updated: Instant,
    paused_until: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket for `rate`.
    pub fn new(rate: Rate) -> Self {
        let capacity = f64::from(rate.count.max(1));
        TokenBucket {
            capacity,
            per_token: rate.interval(),
            tokens: capacity,
            updated: Instant::now(),
            paused_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated);
        if !self.per_token.is_zero() {
            self.tokens =
                (self.tokens + elapsed.as_secs_f64() / self.per_token.as_secs_f64()).min(self.capacity);
        } else {
            self.tokens = self.capacity;
        }
        self.updated = now;
    }

    /// How long until a token is available (zero when one is now).
    pub fn wait_time(&mut self, now: Instant) -> Duration {
        if let Some(until) = self.paused_until {
            if until > now {
                return until - now;
            }
            self.paused_until = None;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            self.per_token.mul_f64(1.0 - self.tokens)
        }
    }

    /// Take one token; call only when `wait_time` is zero.
    pub fn take(&mut self) {
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    /// The platform said wait: spend nothing until `retry_after` has passed,
    /// and restart from an empty bucket so the burst does not repeat.
    pub fn pause(&mut self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
        self.tokens = 0.0;
        self.updated = until;
    }
}

/// A bucket shared by several channels of one account (Slack's workspace
/// `chat.update` limit, Discord's global limit).
pub type SharedBucket = Arc<Mutex<TokenBucket>>;

/// Wait until the local bucket and every shared one have a token, then
/// take one from each. Shared buckets are locked in the order given; every
/// caller passes them in the same order (account-wide first).
pub async fn acquire(local: &mut TokenBucket, shared: &[&SharedBucket]) {
    loop {
        let now = Instant::now();
        let mut wait = local.wait_time(now);
        let mut guards = Vec::with_capacity(shared.len());
        for bucket in shared {
            let mut guard = bucket.lock().await;
            wait = wait.max(guard.wait_time(now));
            guards.push(guard);
        }
        if wait.is_zero() {
            local.take();
            for guard in &mut guards {
                guard.take();
            }
            return;
        }
        drop(guards);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_burst_then_paces() {
        let mut b = TokenBucket::new(Rate::new(5, Duration::from_secs(5)));
        let start = Instant::now();
        for _ in 0..5 {
            acquire(&mut b, &[]).await;
        }
        assert!(start.elapsed() < Duration::from_millis(10));
        acquire(&mut b, &[]).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(990) && waited <= Duration::from_millis(1100),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shared_bucket_paces_every_holder() {
        let shared: SharedBucket =
            Arc::new(Mutex::new(TokenBucket::new(Rate::new(2, Duration::from_secs(2)))));
        let mut a = TokenBucket::new(Rate::new(100, Duration::from_secs(1)));
        let mut b = TokenBucket::new(Rate::new(100, Duration::from_secs(1)));
        let start = Instant::now();
        acquire(&mut a, &[&shared]).await;
        acquire(&mut b, &[&shared]).await;
        acquire(&mut a, &[&shared]).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(990), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn pause_holds_all_sends() {
        let mut b = TokenBucket::new(Rate::new(10, Duration::from_secs(1)));
        b.pause(Duration::from_secs(3));
        let start = Instant::now();
        acquire(&mut b, &[]).await;
        assert!(start.elapsed() >= Duration::from_secs(3));
    }
}
