//! Runs independent simulation jobs on a few threads. Results come back
//! in job order, so the thread count never changes the output.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `f` applied to every job on `threads` threads, calling `progress`
/// after each; results in job order. A panicking job panics the caller
/// (`std::thread::scope`), so every result is there.
pub fn map<J: Sync, R: Send>(
    jobs: &[J],
    threads: usize,
    progress: &(dyn Fn() + Sync),
    f: impl Fn(&J) -> R + Sync,
) -> Vec<R> {
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else {
                        break;
                    };
                    let r = f(job);
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                    progress();
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}
