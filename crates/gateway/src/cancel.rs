//! Cancel keys. Each agent session gets a key of the gateway's own; a CancelRequest
//! carrying it cancels that session's upstream query and nothing else.

use std::collections::HashMap;

use parking_lot::Mutex;
use rand::Rng;

#[derive(Clone)]
pub struct Entry {
    pub target: String,
    pub upstream_key: (i32, i32),
}

#[derive(Default)]
pub struct Cancels {
    map: Mutex<HashMap<(i32, i32), Entry>>,
}

impl Cancels {
    /// Issues a fresh, unguessable key for a session.
    pub fn register(&self, entry: Entry) -> (i32, i32) {
        let mut rng = rand::thread_rng();
        let mut map = self.map.lock();
        loop {
            let key = (rng.gen_range(1..i32::MAX), rng.gen::<i32>());
            if let std::collections::hash_map::Entry::Vacant(v) = map.entry(key) {
                v.insert(entry);
                return key;
            }
        }
    }

    pub fn remove(&self, key: (i32, i32)) {
        self.map.lock().remove(&key);
    }

    pub fn lookup(&self, key: (i32, i32)) -> Option<Entry> {
        self.map.lock().get(&key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_their_own_session_only() {
        let c = Cancels::default();
        let a = c.register(Entry { target: "t".into(), upstream_key: (10, 20) });
        let b = c.register(Entry { target: "t".into(), upstream_key: (11, 21) });
        assert_ne!(a, b);
        assert_eq!(c.lookup(a).unwrap().upstream_key, (10, 20));
        assert!(c.lookup((10, 20)).is_none(), "upstream keys are not accepted");
        c.remove(a);
        assert!(c.lookup(a).is_none());
    }
}
