//! Reconnect delays: exponential with jitter, so a fleet of agents that lost the server at the
//! same moment does not come back at the same moment.

use std::time::Duration;

use ring::rand::SecureRandom as _;

/// First delay after a failure.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// Longest delay between two attempts while the server is unreachable.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Delay between attempts while the server refuses this agent (disabled or deleted by an
/// administrator): the agent keeps asking, so that enabling it again takes effect soon.
pub const REFUSED_BACKOFF: Duration = Duration::from_secs(15);

/// Exponential backoff: the base delay doubles from [`BACKOFF_INITIAL`] up to
/// [`BACKOFF_MAX`]; each delay is drawn from `[base / 2, base]` ("equal jitter").
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self {
            base: BACKOFF_INITIAL,
        }
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.base = BACKOFF_INITIAL;
    }

    /// The next delay, with `jitter` in `[0, 1]` (values outside are clamped).
    pub fn next_with(&mut self, jitter: f64) -> Duration {
        let delay = jittered(self.base, jitter);
        self.base = (self.base * 2).min(BACKOFF_MAX);
        delay
    }

    /// The next delay, with jitter from the system's random source.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(random_unit())
    }
}

/// `[base / 2, base]` by `jitter` in `[0, 1]`.
pub fn jittered(base: Duration, jitter: f64) -> Duration {
    let j = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let half = base / 2;
    half + half.mul_f64(j)
}

/// The delay while refused, jittered like the others.
pub fn refused_delay() -> Duration {
    jittered(REFUSED_BACKOFF, random_unit())
}

/// A uniform number in `[0, 1]` (1.0 when the system has no randomness: no jitter then).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_jitter_bounds() {
        let mut b = Backoff::new();
        let top: Vec<Duration> = (0..10).map(|_| b.next_with(1.0)).collect();
        assert_eq!(top[0], BACKOFF_INITIAL);
        assert_eq!(top[1], BACKOFF_INITIAL * 2);
        assert_eq!(top[2], BACKOFF_INITIAL * 4);
        assert_eq!(*top.last().unwrap(), BACKOFF_MAX);
        assert!(top.windows(2).all(|w| w[0] <= w[1]));
        let mut b = Backoff::new();
        let low: Vec<Duration> = (0..10).map(|_| b.next_with(0.0)).collect();
        assert_eq!(low[0], BACKOFF_INITIAL / 2);
        assert_eq!(*low.last().unwrap(), BACKOFF_MAX / 2);
        for j in [f64::NAN, -3.0, 7.0, f64::INFINITY] {
            let d = Backoff::new().next_with(j);
            assert!(
                d >= BACKOFF_INITIAL / 2 && d <= BACKOFF_INITIAL,
                "{j}: {d:?}"
            );
        }
        let mut b = Backoff::new();
        for _ in 0..1000 {
            let d = b.next_delay();
            assert!(d >= BACKOFF_INITIAL / 2 && d <= BACKOFF_MAX, "{d:?}");
        }
        b.reset();
        assert!(b.next_delay() <= BACKOFF_INITIAL);
        for _ in 0..100 {
            let d = refused_delay();
            assert!(d >= REFUSED_BACKOFF / 2 && d <= REFUSED_BACKOFF);
        }
    }
}
