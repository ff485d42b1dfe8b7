//! Rate limiting per credential: a token bucket for each user token, secret key or checkout
//! key, in this process's memory (so each server process counts on its own).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::ApiError;

/// Beyond this many credentials, buckets that have refilled (idle ones) are dropped.
const MAX_TRACKED: usize = 10_000;

pub struct Throttle {
    /// Requests per second.
    rate: f64,
    /// Requests at once.
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    /// None when `rate` is 0 (no limit).
    pub fn new(rate: u32, burst: u32) -> Option<Throttle> {
        (rate > 0).then(|| Throttle {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// `count` requests per `seconds`, all of which may come at once (sign-in attempts).
    pub fn per_period(count: u32, seconds: u32) -> Throttle {
        Throttle {
            rate: f64::from(count.max(1)) / f64::from(seconds.max(1)),
            burst: f64::from(count.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request of `credential`: `Throttled` (with the seconds to wait) when its
    /// bucket is empty.
    pub fn check(&self, credential: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(credential) {
            buckets.retain(|_, b| b.level(now, self) < self.burst);
        }
        let bucket = buckets.entry(credential.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        bucket.tokens = bucket.level(now, self);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / self.rate).ceil().max(1.0);
        crate::metrics::throttled();
        Err(ApiError::Throttled(wait as u64))
    }
}

impl Bucket {
    fn level(&self, now: Instant, throttle: &Throttle) -> f64 {
        let refill = now.duration_since(self.at).as_secs_f64() * throttle.rate;
        (self.tokens + refill).min(throttle.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_gets_its_burst_then_waits_and_others_are_not_affected() {
        let throttle = Throttle::new(1, 3).unwrap();
        for _ in 0..3 {
            throttle.check("user:1").unwrap();
        }
        assert!(matches!(
            throttle.check("user:1"),
            Err(ApiError::Throttled(1))
        ));
        throttle.check("user:2").unwrap();
        assert!(Throttle::new(0, 10).is_none());
    }
}
