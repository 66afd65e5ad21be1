#![doc = include_str!("time_wheel.md")]

use std::collections::HashMap;
use std::hash::Hash;

const LEVELS: usize = 4;
const SLOTS: usize = 64;
const BITS: u32 = 6;

/// Seconds since the epoch: the wheel's unit.
pub type Tick = i64;

pub struct TimeWheel<K> {
    /// The last tick processed: everything at or before it has been returned.
    now: Tick,
    levels: Vec<Vec<Vec<(K, Tick)>>>,
    overflow: Vec<(K, Tick)>,
    /// Deadlines already past when inserted: due at the very next `advance`, even if time has
    /// not moved since.
    overdue: Vec<(K, Tick)>,
    /// The authoritative deadline of each key.
    deadlines: HashMap<K, Tick>,
}

impl<K: Copy + Eq + Hash> TimeWheel<K> {
    pub fn new(now: Tick) -> Self {
        Self {
            now,
            levels: vec![vec![Vec::new(); SLOTS]; LEVELS],
            overflow: Vec::new(),
            overdue: Vec::new(),
            deadlines: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }

    pub fn deadline(&self, key: &K) -> Option<Tick> {
        self.deadlines.get(key).copied()
    }

    /// Sets (or moves) `key`'s deadline. A deadline at or before the last tick processed is due
    /// at the next `advance`.
    pub fn insert(&mut self, key: K, at: Tick) {
        self.deadlines.insert(key, at);
        self.place(key, at);
    }

    pub fn remove(&mut self, key: &K) {
        self.deadlines.remove(key);
    }

    /// The earliest deadline, to sleep until (O(n); used only when the wheel is small or idle).
    pub fn next_deadline(&self) -> Option<Tick> {
        self.deadlines.values().min().copied()
    }

    fn place(&mut self, key: K, at: Tick) {
        if at <= self.now {
            self.overdue.push((key, at));
            return;
        }
        let delta = u64::try_from(at - self.now).unwrap_or(0);
        for level in 0..LEVELS {
            let span = 1u64 << (BITS * (level as u32 + 1));
            if delta < span {
                let slot = ((at as u64) >> (BITS * level as u32)) as usize % SLOTS;
                self.levels[level][slot].push((key, at));
                return;
            }
        }
        self.overflow.push((key, at));
    }

    /// Moves time to `now` and returns every key due by then (deadline ≤ now), each once.
    pub fn advance(&mut self, now: Tick) -> Vec<(K, Tick)> {
        let mut due = Vec::new();
        for (k, at) in std::mem::take(&mut self.overdue) {
            if self.deadlines.get(&k) == Some(&at) {
                self.deadlines.remove(&k);
                due.push((k, at));
            }
        }
        if now <= self.now {
            return due;
        }
        let full_span = 1i64 << (BITS * LEVELS as u32);
        if now - self.now >= full_span {
            // A long jump: re-sort everything once instead of walking every tick.
            let all: Vec<(K, Tick)> = self.deadlines.iter().map(|(k, t)| (*k, *t)).collect();
            for level in &mut self.levels {
                level.iter_mut().for_each(Vec::clear);
            }
            self.overflow.clear();
            self.now = now;
            for (k, t) in all {
                if t <= now {
                    self.deadlines.remove(&k);
                    due.push((k, t));
                } else {
                    self.place(k, t);
                }
            }
            return due;
        }
        while self.now < now {
            self.now += 1;
            let t = self.now as u64;
            // Cascade from higher levels when lower cursors wrap.
            for level in 1..LEVELS {
                let below_bits = BITS * level as u32;
                if t & ((1u64 << below_bits) - 1) != 0 {
                    break;
                }
                let slot = (t >> below_bits) as usize % SLOTS;
                let entries = std::mem::take(&mut self.levels[level][slot]);
                for (k, at) in entries {
                    self.requeue(k, at, &mut due);
                }
                if level == LEVELS - 1 && slot == 0 {
                    let far = std::mem::take(&mut self.overflow);
                    for (k, at) in far {
                        self.requeue(k, at, &mut due);
                    }
                }
            }
            let slot = t as usize % SLOTS;
            let entries = std::mem::take(&mut self.levels[0][slot]);
            for (k, at) in entries {
                self.requeue(k, at, &mut due);
            }
        }
        due
    }

    /// An entry reached by the cursor: due if its deadline has come (and is still current),
    /// otherwise placed lower; stale entries (moved or removed keys) are dropped.
    fn requeue(&mut self, k: K, at: Tick, due: &mut Vec<(K, Tick)>) {
        if self.deadlines.get(&k) != Some(&at) {
            return;
        }
        if at <= self.now {
            self.deadlines.remove(&k);
            due.push((k, at));
        } else {
            self.place(k, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn keys_come_due_at_their_second_and_not_before() {
        let mut w = TimeWheel::new(1_000);
        w.insert("a", 1_001);
        w.insert("b", 1_070);
        w.insert("c", 1_000 + 5_000);
        assert!(w.advance(1_000).is_empty());
        assert_eq!(w.advance(1_001), vec![("a", 1_001)]);
        assert!(w.advance(1_069).is_empty());
        assert_eq!(w.advance(1_070), vec![("b", 1_070)]);
        assert_eq!(w.advance(7_000), vec![("c", 6_000)]);
        assert!(w.is_empty());
    }

    #[test]
    fn moved_and_removed_keys_do_not_fire_for_old_deadlines() {
        let mut w = TimeWheel::new(0);
        w.insert(1, 10);
        w.insert(2, 10);
        w.insert(1, 20);
        w.remove(&2);
        assert!(w.advance(15).is_empty());
        assert_eq!(w.advance(20), vec![(1, 20)]);
    }

    #[test]
    fn a_deadline_already_past_is_due_at_the_next_advance_even_without_time_moving() {
        let mut w = TimeWheel::new(100);
        w.insert("late", 50);
        assert_eq!(w.advance(100), vec![("late", 50)]);
        assert!(w.advance(100).is_empty());
    }

    #[test]
    fn far_deadlines_and_long_jumps() {
        let year = 366 * 24 * 3600;
        let mut w = TimeWheel::new(0);
        w.insert(1, year);
        w.insert(2, 3);
        assert_eq!(w.advance(5), vec![(2, 3)]);
        assert!(w.advance(year - 1).is_empty());
        assert_eq!(w.advance(year), vec![(1, year)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn every_key_fires_once_at_or_after_its_deadline(
            deadlines in proptest::collection::vec(1i64..400_000, 1..200),
            steps in proptest::collection::vec(1i64..50_000, 1..40),
        ) {
            let mut w = TimeWheel::new(0);
            for (k, d) in deadlines.iter().enumerate() {
                w.insert(k, *d);
            }
            let mut now = 0;
            let mut seen = vec![None; deadlines.len()];
            for s in steps.iter().chain(std::iter::once(&500_000)) {
                now += s;
                for (k, at) in w.advance(now) {
                    prop_assert!(seen[k].is_none(), "key {} fired twice", k);
                    prop_assert_eq!(at, deadlines[k]);
                    prop_assert!(at <= now);
                    seen[k] = Some(now);
                }
                for (k, d) in deadlines.iter().enumerate() {
                    if *d <= now {
                        prop_assert!(seen[k].is_some(), "key {} (deadline {}) missed at {}", k, d, now);
                    }
                }
            }
        }
    }
}
