//! Where ids and times come from on this thread: the system (random ids, the
//! clock), or a seeded sequence that a simulation sets so that one seed
//! replays one run exactly, ids and change times included.

use std::cell::Cell;

thread_local! {
    static SEEDED: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// Makes this thread's ids and times a function of `seed` (None: back to
/// random ids and the clock). For simulations and tests only.
pub fn seed(seed: Option<u64>) {
    SEEDED.with(|s| s.set(seed.map(|seed| (seed, 0))));
}

/// 128 bits from the seeded sequence, if this thread has one.
pub fn bits() -> Option<u128> {
    SEEDED.with(|s| {
        let (seed, n) = s.get()?;
        s.set(Some((seed, n + 1)));
        let mix = |x: u64| {
            let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let a = mix(seed ^ mix(2 * n));
        let b = mix(seed ^ mix(2 * n + 1));
        Some((u128::from(a) << 64) | u128::from(b))
    })
}

/// A logical clock in ms that moves by one per reading, if seeded.
pub fn now_ms() -> Option<u64> {
    SEEDED.with(|s| {
        let (seed, n) = s.get()?;
        s.set(Some((seed, n + 1)));
        Some(1_800_000_000_000 + n)
    })
}
