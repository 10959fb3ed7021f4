//! Rate budgets: how a channel actor spends a platform's rate limits
//! without earning a 429. Fed by the adapter's declared `Limits` and by the
//! retry-after of rate-limited outcomes.
//!
//! A budget is a sliding window: at most `count` sends in any span of
//! `per`. A token bucket that starts full would allow up to twice `count`
//! in the first window, which a platform counting fixed windows (Discord's
//! 5 per 5 s) answers with 429; a sliding window can never exceed any fixed
//! window, and still lets a quiet channel send a burst at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use herald_messaging::Rate;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `rate.count` sends in any window of `rate.per`.
#[derive(Debug)]
pub struct TokenBucket {
    count: usize,
    per: Duration,
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl TokenBucket {
    /// An unused budget for `rate`.
    pub fn new(rate: Rate) -> Self {
        let count = usize::try_from(rate.count.max(1)).unwrap_or(usize::MAX);
        TokenBucket {
            count,
            per: rate.per,
            sent: VecDeque::with_capacity(count.min(4096)),
            paused_until: None,
        }
    }

    /// How long until a send is allowed (zero when one is now).
    pub fn wait_time(&mut self, now: Instant) -> Duration {
        if let Some(until) = self.paused_until {
            if until > now {
                return until - now;
            }
            self.paused_until = None;
        }
        while self
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.per)
        {
            self.sent.pop_front();
        }
        match self.sent.front() {
            Some(oldest) if self.sent.len() >= self.count => {
                (*oldest + self.per).saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        }
    }

    /// Record a send; call only when `wait_time` is zero.
    pub fn take(&mut self) {
        self.sent.push_back(Instant::now());
    }

    /// The platform said wait: send nothing until `retry_after` has passed,
    /// then start from a full window so the burst that hit the limit does
    /// not repeat at once.
    pub fn pause(&mut self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let until = self.paused_until.map_or(until, |u| u.max(until));
        self.paused_until = Some(until);
        self.sent.clear();
        // Fill the window so that slots free up one every per/count from
        // `until` on: sends resume paced, not as a burst.
        let spacing = self.per / u32::try_from(self.count).unwrap_or(u32::MAX).max(1);
        for i in 0..self.count {
            let age = self
                .per
                .saturating_sub(spacing * u32::try_from(i).unwrap_or(u32::MAX));
            self.sent.push_back(until.checked_sub(age).unwrap_or(until));
        }
    }
}

/// A bucket shared by several channels of one account (Slack's workspace
/// `chat.update` limit, Discord's global limit).
pub type SharedBucket = Arc<Mutex<TokenBucket>>;

/// How long until the local budget and every shared one allow a send
/// (zero: now). Takes nothing.
pub async fn ready_in(local: &mut TokenBucket, shared: &[&SharedBucket]) -> Duration {
    let now = Instant::now();
    let mut wait = local.wait_time(now);
    for bucket in shared {
        wait = wait.max(bucket.lock().await.wait_time(now));
    }
    wait
}

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
    async fn burst_then_never_more_than_count_in_any_window() {
        let mut b = TokenBucket::new(Rate::new(5, Duration::from_secs(5)));
        let start = Instant::now();
        let mut sends = Vec::new();
        for _ in 0..17 {
            acquire(&mut b, &[]).await;
            sends.push(start.elapsed());
        }
        assert!(sends[4] < Duration::from_millis(10), "a quiet channel bursts");
        for (i, t) in sends.iter().enumerate() {
            let in_window = sends
                .iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_secs(5))
                .count();
            assert!(
                in_window <= 5,
                "{in_window} sends in the 5 s after send {i}: {sends:?}"
            );
        }
        assert!(sends[16] >= Duration::from_secs(15), "{sends:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shared_budget_paces_every_holder() {
        let shared: SharedBucket =
            Arc::new(Mutex::new(TokenBucket::new(Rate::new(2, Duration::from_secs(1)))));
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
    async fn pause_holds_all_sends_then_paces() {
        let mut b = TokenBucket::new(Rate::new(10, Duration::from_secs(1)));
        b.pause(Duration::from_secs(3));
        let start = Instant::now();
        acquire(&mut b, &[]).await;
        let resumed = start.elapsed();
        assert!(
            resumed >= Duration::from_secs(3) && resumed < Duration::from_millis(3050),
            "{resumed:?}"
        );
        // After a 429 the window restarts full: no burst of 10 at once.
        for _ in 0..3 {
            acquire(&mut b, &[]).await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(3290) && elapsed < Duration::from_millis(3400),
            "{elapsed:?}"
        );
    }
}
