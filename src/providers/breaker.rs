//! A circuit breaker per provider: after N consecutive failures it opens and calls fail fast;
//! after a cooldown one trial call is let through (half-open); its outcome closes or reopens.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `trial_since`: when the one trial call began, if one is running.
    HalfOpen {
        trial_since: Option<Instant>,
    },
}

pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// May a call go through now? In half-open, only one trial at a time.
    pub fn allow(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen {
                    trial_since: Some(Instant::now()),
                };
                true
            }
            State::Open { .. } => false,
            // A trial whose outcome never came back (its caller was cancelled) does not hold
            // the circuit half-open forever: after a cooldown another trial may go.
            State::HalfOpen {
                trial_since: Some(since),
            } if since.elapsed() < self.cooldown => false,
            State::HalfOpen { .. } => {
                *state = State::HalfOpen {
                    trial_since: Some(Instant::now()),
                };
                true
            }
        }
    }

    /// Returns true when this success closed an open circuit.
    pub fn success(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let was_half_open = matches!(*state, State::HalfOpen { .. });
        *state = State::Closed { failures: 0 };
        was_half_open
    }

    /// Returns true when this failure opened the circuit.
    pub fn failure(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let open = State::Open {
            until: Instant::now() + self.cooldown,
        };
        match *state {
            State::Closed { failures } if failures + 1 >= self.threshold => {
                *state = open;
                true
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::HalfOpen { .. } => {
                *state = open;
                true
            }
            State::Open { .. } => false,
        }
    }

    /// Lets go of a half-open trial whose outcome says nothing about the provider's health
    /// (the request itself was bad), so the next call can try.
    pub fn release(&self) {
        if let Ok(mut state) = self.state.lock()
            && matches!(
                *state,
                State::HalfOpen {
                    trial_since: Some(_)
                }
            )
        {
            *state = State::HalfOpen { trial_since: None };
        }
    }

    /// `closed`, `open` or `half_open`, for readiness details and logs.
    pub fn status(&self) -> &'static str {
        match self.state.lock().map(|s| *s) {
            Ok(State::Closed { .. }) | Err(_) => "closed",
            Ok(State::Open { until }) if Instant::now() >= until => "half_open",
            Ok(State::Open { .. }) => "open",
            Ok(State::HalfOpen { .. }) => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_failures_and_closes_after_a_good_trial() {
        let b = Breaker::new(3, Duration::from_secs(30));
        assert!(!b.failure() && !b.failure());
        assert!(b.allow());
        assert!(b.failure(), "third failure opens");
        assert!(!b.allow());
        assert_eq!(b.status(), "open");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(b.allow(), "one trial after the cooldown");
        assert!(!b.allow(), "only one at a time");
        assert!(b.success());
        assert_eq!(b.status(), "closed");
        // A failed trial reopens at once.
        for _ in 0..3 {
            b.failure();
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(b.allow());
        assert!(b.failure());
        assert!(!b.allow());
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_trial_does_not_hold_the_circuit_forever() {
        let b = Breaker::new(1, Duration::from_secs(10));
        b.failure();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(b.allow(), "the trial starts");
        // Its caller is cancelled: no success, failure or release ever comes.
        assert!(!b.allow());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(b.allow(), "another trial after a cooldown");
        b.release();
        assert!(b.allow(), "a released trial frees the slot at once");
    }
}
