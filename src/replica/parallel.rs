//! Work over many records spread across the cores: edits of a large batch,
//! merges of a pull page, documents of a snapshot page.

use crate::error::{Error, Result};

/// Below this many records, threads cost more than they save.
const PARALLEL_THRESHOLD: usize = 64;

/// Runs `f` over `items` on all cores when there are enough of them. A panic in
/// `f` is [`Error::Internal`] whether it ran on a worker thread or inline, so a
/// batch behaves the same whatever its size and the machine's cores.
pub(crate) fn run_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Result<Vec<R>> {
    let panicked = || Error::Internal("a worker thread panicked".into());
    let inline = || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| items.iter().map(&f).collect()))
            .map_err(|_| panicked())
    };
    // available_parallelism() reads cgroup files on Linux (3 opens and reads per
    // call): ask only when the batch is big enough to split, and once per process.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if items.len() < PARALLEL_THRESHOLD {
        return inline();
    }
    let threads = *THREADS.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if threads < 2 {
        return inline();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        // Join every worker before answering: a scope whose unjoined thread panicked
        // would panic itself on the way out.
        let mut out = Vec::with_capacity(items.len());
        let mut failed = false;
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                Err(_) => failed = true,
            }
        }
        if failed {
            return Err(panicked());
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_worker_is_an_internal_error_after_every_worker_is_joined() {
        // 200 items run on threads (on a machine with two cores or more), 10 inline.
        for len in [200, 10] {
            let items: Vec<usize> = (0..len).collect();
            let result = run_parallel(&items, |&i| {
                assert!(i != len - 3, "worker fails on purpose");
                i
            });
            assert!(matches!(result, Err(Error::Internal(_))), "{len} items: {result:?}");
        }
    }
}
