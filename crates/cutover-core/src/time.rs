//! Time as a value: the core never reads a clock, callers pass `now` in.

use serde::{Deserialize, Serialize};

/// A point in time as Unix milliseconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    pub const fn from_secs(s: i64) -> Self {
        Self(s.saturating_mul(1000))
    }
    pub const fn millis(self) -> i64 {
        self.0
    }
    /// Whole seconds since the epoch (rounded down), as JWT `iat`/`exp` claims use.
    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    pub const fn plus_secs(self, s: i64) -> Self {
        Self(self.0.saturating_add(s.saturating_mul(1000)))
    }
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
    pub const fn minus_secs(self, s: i64) -> Self {
        Self(self.0.saturating_sub(s.saturating_mul(1000)))
    }
    /// Whole seconds from `earlier` to `self` (negative when `earlier` is later).
    pub const fn secs_since(self, earlier: Timestamp) -> i64 {
        (self.0 - earlier.0).div_euclid(1000)
    }
}
