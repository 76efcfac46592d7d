//! Where the simulation's decisions come from: a seeded generator for the
//! seed runs, or the bytes of a fuzz input. Every decision of a run is one
//! call here, so the same source replays the same run.

/// A source of decisions.
pub trait Choices {
    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64;
    /// False once the source has nothing more to say (a fuzz input ran out):
    /// the run stops taking new steps.
    fn more(&self) -> bool;

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// An index into `weights`, each picked in proportion to its weight.
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut pick = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                return i;
            }
            pick -= w;
        }
        weights.len() - 1
    }
}

/// splitmix64 over a seed: the seed runs.
pub struct Seeded {
    state: u64,
}

impl Seeded {
    pub fn new(seed: u64) -> Seeded {
        Seeded { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Choices for Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn more(&self) -> bool {
        true
    }
}

/// A fuzz input read one byte (or two) per decision; zeros once it ends.
#[allow(dead_code)]
pub struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

#[allow(dead_code)]
impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data, at: 0 }
    }
}

impl Choices for Bytes<'_> {
    fn below(&mut self, n: u64) -> u64 {
        let width = if n > 256 { 2 } else { 1 };
        let mut v = 0u64;
        for _ in 0..width {
            v = (v << 8) | u64::from(self.data.get(self.at).copied().unwrap_or(0));
            self.at += 1;
        }
        v % n
    }

    fn more(&self) -> bool {
        self.at < self.data.len()
    }
}
