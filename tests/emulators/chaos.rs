//! Random platform faults for crash and outage runs: a share of calls
//! answered with a server error, a share applied and then never answered
//! (the answer is lost). Deterministic for a seed (xorshift), so a failing
//! run can be repeated.

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw {
    /// Handle it normally.
    Normal,
    /// Answer with an HTTP 500.
    ServerError,
    /// Apply it, then never answer.
    Lost,
}

/// Shares of faulty calls.
#[derive(Debug, Clone)]
pub struct Chaos {
    server_error: f64,
    lost: f64,
    state: u64,
}

impl Chaos {
    /// `server_error` and `lost` are shares of all calls (0.1 = 10 %).
    pub fn new(server_error: f64, lost: f64, seed: u64) -> Chaos {
        Chaos {
            server_error,
            lost,
            state: seed.max(1),
        }
    }

    /// The fate of the next call.
    pub fn draw(&mut self) -> Draw {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let x = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        if x < self.server_error {
            Draw::ServerError
        } else if x < self.server_error + self.lost {
            Draw::Lost
        } else {
            Draw::Normal
        }
    }
}
