//! How many posts a concurrent channel keeps in flight: adaptive request
//! concurrency in the manner of Vector's ARC (itself TCP congestion
//! control applied to requests). The limit starts at one, grows by one per
//! observation window (one mean round trip) while round trips hold steady
//! and the limit was actually reached, and shrinks by a tenth on
//! back-pressure (429, 5xx, timeouts) or when round trips rise past their
//! usual spread. A slow receiver is not flooded; a fast one is saturated.
//!
//! Unlike Vector, a channel begins in TCP's slow start: the limit doubles
//! per window until the first sign of pressure, then halves once and
//! continues additively. Herald's bursts are short (a fleet finishing at
//! once): growing by one from one, a 5,000-notification burst to a fast
//! receiver was over before the limit passed 60 (bench/RESULTS.md §2).

use std::time::Duration;

use herald_messaging::{DeliveryOutcome, NotSurfaced};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::InFlight;

/// Where an adaptive limit starts.
const INITIAL: usize = 1;
/// The factor a limit shrinks by on back-pressure.
const DECREASE: f64 = 0.9;
/// How far past its mean (in deviations) a window's round trip may go
/// before it counts as rising.
const RTT_DEVIATION_SCALE: f64 = 2.5;
/// Weight of the newest window in the round-trip average.
const EWMA_ALPHA: f64 = 0.4;
/// Averages of equal round trips differ in their last bits: within this
/// factor, two round trips are the same.
const SAME: f64 = 1.0 + 1e-9;

/// What one finished post tells the limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// The receiver processed it in this long.
    Processed(Duration),
    /// The receiver pushed back: rate limited, overloaded, timed out.
    BackPressure,
    /// Neither (a refused request, a bad address): no signal about load.
    Neutral,
}

impl Answer {
    /// Read a delivery outcome: only typed outcomes decide.
    pub fn of(outcome: &DeliveryOutcome, rtt: Duration) -> Answer {
        match outcome {
            DeliveryOutcome::Surfaced(_) => Answer::Processed(rtt),
            DeliveryOutcome::NotSurfaced(
                NotSurfaced::RateLimited { .. }
                | NotSurfaced::Transient { .. }
                | NotSurfaced::Unverified { .. },
            ) => Answer::BackPressure,
            DeliveryOutcome::NotSurfaced(_) => Answer::Neutral,
        }
    }
}

/// One post's place in its channel's in-flight limit, held by the attempt
/// from its start until the receiver answers. Handing it back with the
/// answer frees the place at once, before herald records the outcome: the
/// limit measures the receiver's load, and a place held while herald's own
/// bookkeeping commits is one the receiver could have used (measured: with
/// places held until the commit, a 10,000-notification burst spent about
/// six of every seven milliseconds of a place waiting on herald, not on the
/// receiver). A ticket dropped unanswered (its attempt ended abnormally)
/// frees its place with no signal about load.
#[derive(Debug)]
pub struct Ticket {
    answers: Option<mpsc::UnboundedSender<Answer>>,
}

impl Ticket {
    /// A ticket whose answer goes to `answers` (the channel's limiter side).
    pub fn new(answers: mpsc::UnboundedSender<Answer>) -> Ticket {
        Ticket {
            answers: Some(answers),
        }
    }

    /// The receiver answered: give the place back with what it said.
    pub fn answer(mut self, answer: Answer) {
        self.give_back(answer);
    }

    fn give_back(&mut self, answer: Answer) {
        if let Some(answers) = self.answers.take() {
            // A stopped actor no longer counts places.
            let _gone = answers.send(answer).is_err();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.give_back(Answer::Neutral);
    }
}

/// An exponentially weighted mean and variance of round trips (seconds).
#[derive(Debug, Clone, Copy)]
struct Ewma {
    mean: f64,
    variance: f64,
}

impl Ewma {
    fn update(self, x: f64) -> Ewma {
        let diff = x - self.mean;
        let step = EWMA_ALPHA * diff;
        Ewma {
            mean: self.mean + step,
            variance: (1.0 - EWMA_ALPHA) * (self.variance + diff * step),
        }
    }
}

/// The limit of one channel and what it learned in the current window.
#[derive(Debug)]
pub struct Limiter {
    config: InFlight,
    limit: usize,
    in_flight: usize,
    past: Option<Ewma>,
    /// Round trips of the current window: sum (seconds) and count.
    window_sum: f64,
    window_count: u32,
    window_ends: Instant,
    back_pressure: bool,
    reached_limit: bool,
    /// No pressure seen yet: grow by doubling.
    slow_start: bool,
}

impl Limiter {
    /// A limiter for a channel's settings.
    pub fn new(config: InFlight) -> Limiter {
        let max = config.max.max(1);
        let config = InFlight { max, ..config };
        Limiter {
            config,
            limit: if config.adaptive { INITIAL.min(max) } else { max },
            in_flight: 0,
            past: None,
            window_sum: 0.0,
            window_count: 0,
            window_ends: Instant::now(),
            back_pressure: false,
            reached_limit: false,
            slow_start: true,
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Posts in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How many more posts may start now.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.in_flight)
    }

    /// A post starts.
    pub fn start(&mut self) {
        self.in_flight += 1;
        if self.in_flight >= self.limit {
            self.reached_limit = true;
        }
    }

    /// A post finished with `answer`; at the end of an observation window
    /// (one mean round trip long) the limit moves.
    pub fn finish(&mut self, answer: Answer) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match answer {
            Answer::Processed(rtt) => {
                self.window_sum += rtt.as_secs_f64();
                self.window_count += 1;
            }
            Answer::BackPressure => self.back_pressure = true,
            Answer::Neutral => {}
        }
        let current = (self.window_count > 0).then(|| self.window_sum / f64::from(self.window_count));
        let now = Instant::now();
        let Some(past) = self.past else {
            if let Some(rtt) = current {
                self.past = Some(Ewma {
                    mean: rtt,
                    variance: 0.0,
                });
                self.window_ends = now + Duration::from_secs_f64(rtt);
                self.reset_window();
            } else if self.back_pressure {
                // Back-pressure before any round trip was measured.
                self.adjust(None, None);
                self.reset_window();
            }
            return;
        };
        if now < self.window_ends {
            return;
        }
        self.adjust(Some(past), current);
        let past = current.map_or(past, |rtt| past.update(rtt));
        self.past = Some(past);
        self.window_ends = now + Duration::from_secs_f64(past.mean);
        self.reset_window();
    }

    fn reset_window(&mut self) {
        self.window_sum = 0.0;
        self.window_count = 0;
        self.back_pressure = false;
        self.reached_limit = false;
    }

    fn adjust(&mut self, past: Option<Ewma>, current: Option<f64>) {
        if !self.config.adaptive {
            return;
        }
        let holding = match (past, current) {
            (Some(past), Some(rtt)) => rtt <= past.mean * SAME,
            _ => false,
        };
        let rising = match (past, current) {
            // Strictly above: a perfectly steady link (no spread) is not
            // rising when a window matches its mean.
            (Some(past), Some(rtt)) => rtt > (past.mean + past.variance.sqrt() * RTT_DEVIATION_SCALE) * SAME,
            _ => false,
        };
        if self.limit < self.config.max && self.reached_limit && !self.back_pressure && holding {
            let grown = if self.slow_start {
                self.limit * 2
            } else {
                self.limit + 1
            };
            self.limit = grown.min(self.config.max);
        } else if self.back_pressure || rising {
            if self.slow_start {
                // The doubling overshot: back to the last size that held.
                self.slow_start = false;
                self.limit = (self.limit / 2).max(1);
            } else if self.limit > 1 {
                // Truncation makes the new limit strictly smaller.
                let shrunk = (self.limit as f64 * DECREASE) as usize;
                self.limit = shrunk.clamp(1, self.limit - 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adaptive(max: usize) -> Limiter {
        Limiter::new(InFlight { max, adaptive: true })
    }

    /// Keep the limiter saturated for `rounds` windows with answers that
    /// take `rtt` each.
    async fn saturate(l: &mut Limiter, rounds: usize, rtt: Duration, answer: impl Fn() -> Answer) {
        for _ in 0..rounds {
            while l.room() > 0 {
                l.start();
            }
            // A little longer than the round trip: each batch of answers
            // lands after the window (one mean round trip) has ended.
            tokio::time::advance(rtt + Duration::from_millis(1)).await;
            while l.in_flight() > 0 {
                l.finish(answer());
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn doubles_until_pressure_then_grows_by_one_per_window() {
        let mut l = adaptive(200);
        assert_eq!(l.limit(), 1);
        let rtt = Duration::from_millis(10);
        // The first window only measures; each later one doubles.
        saturate(&mut l, 6, rtt, || Answer::Processed(rtt)).await;
        assert_eq!(l.limit(), 32);
        saturate(&mut l, 1, rtt, || Answer::BackPressure).await;
        assert_eq!(l.limit(), 16, "slow start ends by halving");
        // The rest of that round's refusals land in the next window and
        // take a tenth off (16 → 14); then one per window.
        saturate(&mut l, 10, rtt, || Answer::Processed(rtt)).await;
        assert_eq!(l.limit(), 23, "then one per window");
        saturate(&mut l, 500, rtt, || Answer::Processed(rtt)).await;
        assert_eq!(l.limit(), 200, "capped at max_in_flight");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_stops_at_the_cap() {
        let mut l = adaptive(20);
        let rtt = Duration::from_millis(10);
        saturate(&mut l, 20, rtt, || Answer::Processed(rtt)).await;
        assert_eq!(l.limit(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn back_pressure_shrinks_by_a_tenth_after_slow_start() {
        let mut l = adaptive(200);
        let rtt = Duration::from_millis(10);
        saturate(&mut l, 7, rtt, || Answer::Processed(rtt)).await;
        saturate(&mut l, 1, rtt, || Answer::BackPressure).await;
        assert_eq!(l.limit(), 32);
        // 32 → 28 (the round's other refusals), then +1 per window.
        saturate(&mut l, 8, rtt, || Answer::Processed(rtt)).await;
        assert_eq!(l.limit(), 35);
        saturate(&mut l, 1, rtt, || Answer::BackPressure).await;
        assert_eq!(l.limit(), 31, "35 × 0.9, truncated");
        saturate(&mut l, 100, rtt, || Answer::BackPressure).await;
        assert_eq!(l.limit(), 1, "never below one");
    }

    #[tokio::test(start_paused = true)]
    async fn rising_round_trips_shrink_the_limit() {
        let mut l = adaptive(200);
        let mut rtt = Duration::from_millis(10);
        saturate(&mut l, 5, rtt, || Answer::Processed(rtt)).await;
        assert_eq!(l.limit(), 16);
        rtt = Duration::from_millis(40);
        saturate(&mut l, 1, rtt, || Answer::Processed(rtt)).await;
        assert_eq!(l.limit(), 8, "rising round trips end slow start");
        rtt = Duration::from_millis(10);
        saturate(&mut l, 10, rtt, || Answer::Processed(rtt)).await;
        let before = l.limit();
        rtt = Duration::from_millis(200);
        saturate(&mut l, 1, rtt, || Answer::Processed(rtt)).await;
        assert!(l.limit() < before, "{} !< {before}", l.limit());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unsaturated_channel_does_not_grow() {
        let mut l = adaptive(200);
        let rtt = Duration::from_millis(10);
        saturate(&mut l, 10, rtt, || Answer::Processed(rtt)).await;
        let before = l.limit();
        for _ in 0..100 {
            // One post at a time, below the limit.
            l.start();
            tokio::time::advance(rtt + Duration::from_millis(1)).await;
            l.finish(Answer::Processed(rtt));
        }
        assert_eq!(l.limit(), before);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_limit_never_moves() {
        let mut l = Limiter::new(InFlight {
            max: 8,
            adaptive: false,
        });
        assert_eq!(l.limit(), 8);
        let rtt = Duration::from_millis(10);
        saturate(&mut l, 20, rtt, || Answer::BackPressure).await;
        assert_eq!(l.limit(), 8);
        saturate(&mut l, 20, rtt, || Answer::Processed(rtt)).await;
        assert_eq!(l.limit(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn neutral_answers_teach_nothing() {
        let mut l = adaptive(10);
        saturate(&mut l, 30, Duration::from_millis(5), || Answer::Neutral).await;
        assert_eq!(l.limit(), 1);
    }

    #[test]
    fn a_ticket_gives_its_place_back_once_answered_or_dropped() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rtt = Duration::from_millis(4);
        Ticket::new(tx.clone()).answer(Answer::Processed(rtt));
        assert_eq!(rx.try_recv().ok(), Some(Answer::Processed(rtt)));
        assert!(
            rx.try_recv().is_err(),
            "an answered ticket gives its place back once"
        );
        // An attempt that ended abnormally (panicked, cancelled) drops its
        // ticket unanswered: the place comes back, teaching nothing.
        let abandoned = Ticket::new(tx.clone());
        drop(abandoned);
        assert_eq!(rx.try_recv().ok(), Some(Answer::Neutral));
        // Handed back into a limiter, the place is free again.
        let mut l = adaptive(4);
        l.start();
        assert_eq!(l.room(), 0);
        Ticket::new(tx).answer(Answer::BackPressure);
        l.finish(rx.try_recv().expect("the answer came back"));
        assert_eq!(l.room(), 1);
    }

    #[test]
    fn outcomes_read_as_answers() {
        let rtt = Duration::from_millis(3);
        let handle = herald_messaging::MessageHandle("1".into());
        assert_eq!(
            Answer::of(&DeliveryOutcome::Surfaced(handle), rtt),
            Answer::Processed(rtt)
        );
        let not = |r| DeliveryOutcome::NotSurfaced(r);
        let limited = not(NotSurfaced::RateLimited {
            retry_after: rtt,
            global: false,
        });
        assert_eq!(Answer::of(&limited, rtt), Answer::BackPressure);
        let timed_out = not(NotSurfaced::Unverified {
            reason: "timeout".into(),
        });
        assert_eq!(Answer::of(&timed_out, rtt), Answer::BackPressure);
        let refused = not(NotSurfaced::Permanent { reason: "400".into() });
        assert_eq!(Answer::of(&refused, rtt), Answer::Neutral);
    }
}
