//! Failed-authentication limit per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const WINDOW: Duration = Duration::from_secs(60);

pub struct AuthLimiter {
    per_window: u32,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthLimiter {
    pub fn new(per_minute: u32) -> Self {
        AuthLimiter { per_window: per_minute, failures: Mutex::new(HashMap::new()) }
    }

    /// True while the address has used up its failures for the current window.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let mut map = self.failures.lock();
        match map.get(&ip) {
            Some((start, _)) if start.elapsed() >= WINDOW => {
                map.remove(&ip);
                false
            }
            Some((_, n)) => *n >= self.per_window,
            None => false,
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.failures.lock();
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        let e = map.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_per_address() {
        let l = AuthLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        l.failed(a);
        assert!(!l.blocked(a));
        l.failed(a);
        assert!(l.blocked(a));
        assert!(!l.blocked(b));
    }
}
