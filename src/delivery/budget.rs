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

pub use crate::store::KeptWindow;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `rate.count` sends in any window of `rate.per`.
#[derive(Debug, Clone)]
pub struct Window {
    count: usize,
    per: Duration,
    sent: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl Window {
    /// An unused budget for `rate`.
    pub fn new(rate: Rate) -> Self {
        let count = usize::try_from(rate.count.max(1)).unwrap_or(usize::MAX);
        Window {
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
    #[cfg(test)]
    pub fn take(&mut self) {
        self.take_at(Instant::now());
    }

    /// Record a send made at `now`.
    pub fn take_at(&mut self, now: Instant) {
        self.sent.push_back(now);
    }

    /// The send made at `sent` was answered at `answered`: it counts from
    /// then on. The platform counted it when it *arrived*, at some moment
    /// between the two, and under load (a busy runtime, a slow connection)
    /// that can be long after the send was allowed; counting from the
    /// answer keeps any `count` arrivals at least `per` apart however late
    /// the requests went out. A send the window no longer holds (a pause
    /// refilled it) is ignored.
    pub fn settle(&mut self, sent: Instant, answered: Instant) {
        let Some(i) = self.sent.iter().rposition(|t| *t == sent) else {
            return;
        };
        self.sent.remove(i);
        let at = self.sent.partition_point(|t| *t <= answered);
        self.sent.insert(at, answered);
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

    /// The platform said its bucket is empty until `reset_after` and full
    /// again then (Discord's `X-RateLimit-Reset-After`): send nothing
    /// before, and the window's own count decides after.
    pub fn hold(&mut self, reset_after: Duration) {
        let until = Instant::now() + reset_after;
        self.paused_until = Some(self.paused_until.map_or(until, |u| u.max(until)));
    }

    /// How many sends are allowed right now without waiting.
    pub fn available_now(&mut self, now: Instant) -> usize {
        if !self.wait_time(now).is_zero() {
            return 0;
        }
        self.count.saturating_sub(self.sent.len())
    }

    /// The sends still inside the window and the pause in force, as Unix
    /// milliseconds (`now` and `now_ms` are the same moment on both clocks),
    /// so the window can be kept in the store across restarts.
    pub fn snapshot(&mut self, now: Instant, now_ms: i64) -> KeptWindow {
        self.wait_time(now);
        let to_ms = |t: Instant| -> i64 {
            let ago = i64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(i64::MAX / 4);
            let ahead = i64::try_from(t.saturating_duration_since(now).as_millis()).unwrap_or(i64::MAX / 4);
            now_ms - ago + ahead
        };
        KeptWindow {
            sends: self.sent.iter().map(|t| to_ms(*t)).collect(),
            paused_until: self.paused_until.map(to_ms),
        }
    }

    /// Take back a window kept by [`Window::snapshot`] (of an earlier
    /// process): its sends still count, its pause still holds. Each send
    /// counts [`RESTORE_MARGIN`] later than kept: a call the earlier
    /// process let through just before it died was kept at the moment it
    /// left, and may have reached the platform (which counts arrivals) up
    /// to a round trip later; its answer, which would have moved it there
    /// (`settle`), never came.
    pub fn restore(&mut self, kept: &KeptWindow, now: Instant, now_ms: i64) {
        self.restore_with(kept, now, now_ms, RESTORE_MARGIN_MS);
    }

    /// Take a window another replica keeps spending right now, exactly as
    /// kept (its sends are settled by their own process).
    pub fn restore_exact(&mut self, kept: &KeptWindow, now: Instant, now_ms: i64) {
        self.restore_with(kept, now, now_ms, 0);
    }

    fn restore_with(&mut self, kept: &KeptWindow, now: Instant, now_ms: i64, margin_ms: i64) {
        let to_instant = |ms: i64| -> Instant {
            let delta = Duration::from_millis(ms.abs_diff(now_ms));
            if ms >= now_ms {
                now + delta
            } else {
                now.checked_sub(delta).unwrap_or(now)
            }
        };
        let mut sends: Vec<Instant> = kept
            .sends
            .iter()
            .map(|ms| to_instant(ms.saturating_add(margin_ms)))
            .collect();
        sends.sort();
        self.sent = sends.into_iter().collect();
        while self.sent.len() > self.count {
            self.sent.pop_front();
        }
        self.paused_until = kept
            .paused_until
            .map(to_instant)
            .filter(|until| *until > now)
            .max(self.paused_until);
        self.wait_time(now);
    }
}

/// How much later than kept a restored send counts (see
/// [`Window::restore`]): more than a platform round trip under load. It
/// only delays the first sends after a restart, and only where a window
/// was full.
pub const RESTORE_MARGIN: Duration = Duration::from_millis(RESTORE_MARGIN_MS as u64);
const RESTORE_MARGIN_MS: i64 = 1_000;

/// A window shared by the holders of one budget (the channel actor alone,
/// or every channel of an account).
pub type SharedWindow = Arc<Mutex<Window>>;

/// How long until every window allows a send (zero: now). Takes nothing.
pub async fn ready_in(windows: &[&SharedWindow]) -> Duration {
    let now = Instant::now();
    let mut wait = Duration::ZERO;
    for window in windows {
        wait = wait.max(window.lock().await.wait_time(now));
    }
    wait
}

/// Wait until every window allows a send, then take one from each;
/// returns the moment taken (to [`settle`] the send once answered).
/// Windows are locked in the order given; every caller passes them in the
/// same order (account-wide first), so two holders never deadlock.
pub async fn acquire(windows: &[&SharedWindow]) -> Instant {
    loop {
        match try_acquire(windows).await {
            Ok(now) => return now,
            Err(wait) => tokio::time::sleep(wait).await,
        }
    }
}

/// Take one send from each of `windows` if every one allows it now (the
/// moment taken), else how long until they might: never waits, so a
/// caller whose call is blocked can do other work meanwhile.
pub async fn try_acquire(windows: &[&SharedWindow]) -> Result<Instant, Duration> {
    let now = Instant::now();
    let mut wait = Duration::ZERO;
    let mut guards = Vec::with_capacity(windows.len());
    for window in windows {
        let mut guard = window.lock().await;
        wait = wait.max(guard.wait_time(now));
        guards.push(guard);
    }
    if !wait.is_zero() {
        return Err(wait);
    }
    for guard in &mut guards {
        guard.take_at(now);
    }
    Ok(now)
}

/// The send taken at `sent` from each of `windows` was answered now.
pub async fn settle(windows: &[&SharedWindow], sent: Instant) {
    let answered = Instant::now();
    for window in windows {
        window.lock().await.settle(sent, answered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_send_counts_from_its_answer() {
        let w = shared(Window::new(Rate::new(2, Duration::from_secs(1))));
        let first = acquire(&[&w]).await;
        acquire(&[&w]).await;
        // The first request was slow: answered half a second later.
        tokio::time::advance(Duration::from_millis(500)).await;
        settle(&[&w], first).await;
        tokio::time::advance(Duration::from_millis(600)).await;
        // The second send's slot is free (1.1 s old); the first's is only
        // 0.6 s old counted from its answer.
        let wait = w.lock().await.wait_time(Instant::now());
        assert_eq!(wait, Duration::ZERO, "one slot free");
        acquire(&[&w]).await;
        let wait = w.lock().await.wait_time(Instant::now());
        assert_eq!(wait, Duration::from_millis(400));
    }

    fn shared(w: Window) -> SharedWindow {
        Arc::new(Mutex::new(w))
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_window_still_counts_and_still_pauses_after_a_restart() {
        let rate = Rate::new(3, Duration::from_secs(10));
        let mut before = Window::new(rate);
        for _ in 0..3 {
            before.take();
        }
        let (now, now_ms) = (Instant::now(), 1_000_000);
        let kept = before.snapshot(now, now_ms);
        assert_eq!(kept.sends, vec![now_ms; 3]);
        // A new process 4 s later: the window is still full for 6 s, and
        // for the restore margin more (a call cut off by the crash may have
        // arrived that much later than it left).
        tokio::time::advance(Duration::from_secs(4)).await;
        let mut after = Window::new(rate);
        after.restore(&kept, Instant::now(), now_ms + 4_000);
        let wait = after.wait_time(Instant::now());
        let full = Duration::from_secs(6) + RESTORE_MARGIN;
        assert!(
            wait > full - Duration::from_millis(100) && wait <= full,
            "{wait:?}"
        );
        // A pause in force is kept too.
        let mut paused = Window::new(rate);
        paused.pause(Duration::from_secs(30));
        let kept = paused.snapshot(Instant::now(), 2_000_000);
        tokio::time::advance(Duration::from_secs(10)).await;
        let mut after = Window::new(rate);
        after.restore(&kept, Instant::now(), 2_010_000);
        let wait = after.wait_time(Instant::now());
        assert!(
            wait > Duration::from_millis(19_900) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert_eq!(after.available_now(Instant::now()), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_never_more_than_count_in_any_window() {
        let b = shared(Window::new(Rate::new(5, Duration::from_secs(5))));
        let start = Instant::now();
        let mut sends = Vec::new();
        for _ in 0..17 {
            acquire(&[&b]).await;
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
        let account = shared(Window::new(Rate::new(2, Duration::from_secs(1))));
        let a = shared(Window::new(Rate::new(100, Duration::from_secs(1))));
        let b = shared(Window::new(Rate::new(100, Duration::from_secs(1))));
        let start = Instant::now();
        acquire(&[&account, &a]).await;
        acquire(&[&account, &b]).await;
        acquire(&[&account, &a]).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(990), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn pause_holds_all_sends_then_paces() {
        let b = shared(Window::new(Rate::new(10, Duration::from_secs(1))));
        b.lock().await.pause(Duration::from_secs(3));
        let start = Instant::now();
        acquire(&[&b]).await;
        let resumed = start.elapsed();
        assert!(
            resumed >= Duration::from_secs(3) && resumed < Duration::from_millis(3050),
            "{resumed:?}"
        );
        // After a 429 the window restarts full: no burst of 10 at once.
        for _ in 0..3 {
            acquire(&[&b]).await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(3290) && elapsed < Duration::from_millis(3400),
            "{elapsed:?}"
        );
    }
}
