//! Health of one backend: the state machine from probe observations to up/down, with rise/fall
//! hysteresis and byAge staleness (mod_backhand). Pure: time is passed in.

use std::time::{Duration, Instant};

/// What one probe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub ok: bool,
    /// Load reported by the backend (lbcd 1-minute load, or an HTTP load header).
    pub load: Option<f64>,
    /// lbcd's weight and increment for the asked service (lower weight = better).
    pub lbcd: Option<(u32, u32)>,
    /// Why it failed, or a short success note; shown on the status page and in flip logs.
    pub detail: String,
    pub latency: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not probed yet. Counts as down for answers; the first observation decides directly.
    Unknown,
    Up,
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// Health of one backend over time.
#[derive(Debug, Clone)]
pub struct Health {
    pub state: State,
    /// Consecutive results agreeing with each other, for rise/fall.
    successes: u32,
    failures: u32,
    pub last: Option<(Instant, Observation)>,
    pub last_ok: Option<Instant>,
    pub flips: u64,
    /// Every probe result so far, for `/metrics`.
    pub probes: ProbeStats,
}

/// Upper bounds (seconds) of the probe latency histogram buckets: sub-millisecond loopback
/// answers up to the longest timeout the failover bound allows in practice.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Counts of probe results and a latency histogram (Prometheus style, not cumulative here).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeStats {
    pub ok: u64,
    pub failed: u64,
    /// `buckets[i]` counts probes with latency in (LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]];
    /// slower ones are only in the total (`ok + failed`).
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub latency_sum: Duration,
}

impl ProbeStats {
    fn add(&mut self, obs: &Observation) {
        if obs.ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        let secs = obs.latency.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i] += 1;
        }
        self.latency_sum += obs.latency;
    }

    pub fn count(&self) -> u64 {
        self.ok + self.failed
    }
}

/// A change of state, to log once.
#[derive(Debug, Clone, PartialEq)]
pub struct Flip {
    pub from: State,
    pub to: State,
    pub cause: String,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        Health {
            state: State::Unknown,
            successes: 0,
            failures: 0,
            last: None,
            last_ok: None,
            flips: 0,
            probes: ProbeStats::default(),
        }
    }

    /// A backend that is never probed (kind `none`).
    pub fn always_up() -> Health {
        Health {
            state: State::Up,
            ..Health::new()
        }
    }

    /// Applies one observation. From Unknown the first result decides at once (at start a
    /// known-dead backend must not wait `rise` rounds to be excluded, nor a good one to be
    /// included); after that `rise` successes bring a backend up and `fall` failures take it
    /// down.
    pub fn observe(
        &mut self,
        now: Instant,
        obs: Observation,
        rise: u32,
        fall: u32,
    ) -> Option<Flip> {
        self.probes.add(&obs);
        if obs.ok {
            self.successes += 1;
            self.failures = 0;
            self.last_ok = Some(now);
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let next = match (self.state, obs.ok) {
            (State::Unknown, true) => State::Up,
            (State::Unknown, false) => State::Down,
            (State::Down, true) if self.successes >= rise => State::Up,
            (State::Up, false) if self.failures >= fall => State::Down,
            (s, _) => s,
        };
        let cause = obs.detail.clone();
        self.last = Some((now, obs));
        if next == self.state {
            return None;
        }
        let flip = Flip {
            from: self.state,
            to: next,
            cause,
        };
        self.state = next;
        self.flips += 1;
        Some(flip)
    }

    /// Up and its last good report is no older than `max_age` (byAge).
    pub fn usable(&self, now: Instant, max_age: Duration) -> bool {
        self.state == State::Up
            && self
                .last_ok
                .is_none_or(|t| now.saturating_duration_since(t) <= max_age)
    }

    /// The latest reported load, if the probe reports one.
    pub fn load(&self) -> Option<f64> {
        self.last.as_ref().and_then(|(_, o)| o.load)
    }

    pub fn lbcd(&self) -> Option<(u32, u32)> {
        self.last.as_ref().and_then(|(_, o)| o.lbcd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(ok: bool) -> Observation {
        Observation {
            ok,
            load: None,
            lbcd: None,
            detail: if ok { "ok".into() } else { "refused".into() },
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn first_result_decides_then_hysteresis() {
        let t = Instant::now();
        let mut h = Health::new();
        assert!(!h.usable(t, Duration::from_secs(5)));
        let f = h.observe(t, obs(false), 2, 3).unwrap();
        assert_eq!((f.from, f.to), (State::Unknown, State::Down));
        assert_eq!(f.cause, "refused");
        assert_eq!(
            h.observe(t, obs(true), 2, 3),
            None,
            "one success is not rise=2"
        );
        assert_eq!(h.observe(t, obs(true), 2, 3).unwrap().to, State::Up);
        assert!(h.observe(t, obs(false), 2, 3).is_none());
        assert!(h.observe(t, obs(false), 2, 3).is_none());
        assert!(
            h.observe(t, obs(true), 2, 3).is_none(),
            "a success resets the fall count"
        );
        assert!(h.observe(t, obs(false), 2, 3).is_none());
        assert!(h.observe(t, obs(false), 2, 3).is_none());
        assert_eq!(h.observe(t, obs(false), 2, 3).unwrap().to, State::Down);
        assert_eq!(h.flips, 3);
        assert_eq!((h.probes.ok, h.probes.failed), (3, 6));
    }

    #[test]
    fn probe_latencies_fall_into_buckets() {
        let mut s = ProbeStats::default();
        for ms in [0, 1, 3, 700, 5000] {
            s.add(&Observation {
                latency: Duration::from_millis(ms),
                ..obs(true)
            });
        }
        // 0 ms ≤ 0.5 ms; 1 ms ≤ 1 ms; 3 ms ≤ 5 ms; 700 ms ≤ 1 s; 5 s above every bucket.
        assert_eq!(s.buckets, [1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(s.count(), 5);
        assert_eq!(s.latency_sum, Duration::from_millis(5704));
    }

    #[test]
    fn stale_reports_count_as_down() {
        let t = Instant::now();
        let mut h = Health::new();
        h.observe(t, obs(true), 1, 1);
        assert!(h.usable(t + Duration::from_secs(3), Duration::from_secs(3)));
        assert!(!h.usable(t + Duration::from_millis(3001), Duration::from_secs(3)));
        assert!(Health::always_up().usable(t, Duration::ZERO));
    }
}
