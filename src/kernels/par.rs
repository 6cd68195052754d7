//! Work sharing for the fused kernels on candle's own CPU worker pool.
//!
//! candle 0.11 runs its element-wise ops on a barrier pool (one spinning worker per extra core,
//! the calling thread taking part), while its matmul uses rayon. On a two-core machine, running
//! the fused kernels on rayon too put four busy threads on two cores: the pool's worker spins for
//! about a millisecond after each candle op while rayon's workers want the same cores. So every
//! fused kernel, and every gemm the fused ops issue (single-threaded gemm calls on row blocks),
//! runs here instead, on the threads candle already keeps hot.

use std::cell::Cell;
use std::sync::Mutex;

use super::lock;

thread_local! {
    /// Set while this thread is inside [`run`]: a nested call runs inline instead of waiting on
    /// the pool it is part of.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Threads the kernels split work over: candle's pool workers plus the calling thread.
pub(crate) fn threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// Runs `f` on every task, spread over candle's worker pool; the calling thread takes part and
/// the call returns when all tasks are done. A panic in a task is re-raised here.
pub(crate) fn run<T: Send>(tasks: Vec<T>, f: impl Fn(T) + Sync) {
    let n = tasks.len();
    let pool = candle_core::utils::barrier_pool();
    if n <= 1 || pool.n_workers() == 0 || INSIDE.get() {
        tasks.into_iter().for_each(f);
        return;
    }
    let slots: Vec<Mutex<Option<T>>> = tasks.into_iter().map(|t| Mutex::new(Some(t))).collect();
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            INSIDE.set(false);
        }
    }
    INSIDE.set(true);
    let _reset = Reset;
    pool.execute_chunked(n, |range| {
        for i in range {
            let task = lock(&slots[i]).take();
            if let Some(task) = task {
                f(task);
            }
        }
    });
}

/// Rows per task for a row-wise kernel over `rows` rows of `width` elements: one task when the
/// work is small, else an even split over the threads.
pub(crate) fn rows_per_task(rows: usize, width: usize) -> usize {
    let n = threads();
    if n <= 1 || rows * width < super::PARALLEL_MIN {
        rows.max(1)
    } else {
        rows.div_ceil(n).max(1)
    }
}

/// Elements per task for an element-wise kernel over `n` elements (multiples of 64, so vector
/// loops see whole registers).
pub(crate) fn elements_per_task(n: usize) -> usize {
    if n < super::PARALLEL_MIN || threads() <= 1 {
        n.max(1)
    } else {
        n.div_ceil(threads()).next_multiple_of(64)
    }
}
