//! The platforms' rate limiting as the overview shows it: every 429 (or
//! Telegram `retry_after`, Slack `ratelimited`) a channel's calls were
//! answered with, kept for an hour in memory. Per replica: each counts the
//! answers of the channels it delivers, which is what its operator can act
//! on; the counts start again at a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use herald_messaging::NotSurfaced;

/// How far back the counts reach (ms).
pub const WINDOW_MS: i64 = 60 * 60 * 1000;

/// Rate-limited answers per channel name, as (Unix ms) times.
#[derive(Clone, Default)]
pub struct Throttles {
    seen: Arc<Mutex<HashMap<String, VecDeque<i64>>>>,
}

impl Throttles {
    /// Note one call's failure, if it was the platform's rate limit.
    pub fn note(&self, channel: &str, failure: Option<&NotSurfaced>, now: i64) {
        if matches!(failure, Some(NotSurfaced::RateLimited { .. })) {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let times = seen.entry(channel.to_owned()).or_default();
            forget_before(times, now - WINDOW_MS);
            times.push_back(now);
        }
    }

    /// Rate-limited answers of each channel in the hour before `now`
    /// (channels with none are absent).
    pub fn last_hour(&self, now: i64) -> HashMap<String, u64> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|_, times| {
            forget_before(times, now - WINDOW_MS);
            !times.is_empty()
        });
        seen.iter()
            .map(|(channel, times)| (channel.clone(), times.len() as u64))
            .collect()
    }
}

fn forget_before(times: &mut VecDeque<i64>, cutoff: i64) {
    while times.front().is_some_and(|t| *t <= cutoff) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limited() -> NotSurfaced {
        NotSurfaced::RateLimited {
            retry_after: Duration::from_secs(1),
            global: false,
        }
    }

    #[test]
    fn counts_rate_limits_only_and_forgets_them_after_an_hour() {
        let t = Throttles::default();
        t.note("ops", Some(&limited()), 1_000);
        t.note("ops", Some(&NotSurfaced::Gone), 1_500);
        t.note("ops", None, 1_600);
        t.note("ops", Some(&limited()), 2_000);
        t.note("dev", Some(&limited()), 3_000);
        let now = 10_000;
        assert_eq!(t.last_hour(now).get("ops"), Some(&2));
        assert_eq!(t.last_hour(now).get("dev"), Some(&1));
        // An hour after the first, only the later ones count.
        assert_eq!(t.last_hour(1_000 + WINDOW_MS).get("ops"), Some(&1));
        assert_eq!(t.last_hour(3_000 + WINDOW_MS), HashMap::new());
    }
}
