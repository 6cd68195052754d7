//! Work sharing for the fused kernels on candle's own CPU worker pool.
//!
//! candle 0.11 runs its element-wise ops on a barrier pool (one spinning worker per extra core,
//! the calling thread taking part), while its matmul uses rayon. On a two-core machine, running
//! the fused kernels on rayon too put four busy threads on two cores: the pool's worker spins for
//! about a millisecond after each candle op while rayon's workers want the same cores. So every
//! fused kernel, and every gemm the fused ops issue (single-threaded gemm calls on row blocks),
//! runs here instead, on the threads candle already keeps hot.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::lock;

thread_local! {
    /// Set while this thread is inside [`run`]: a nested call runs inline instead of waiting on
    /// the pool it is part of.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
    /// Set inside [`with_threads`]`(1, ..)`: this thread's work stays on this thread.
    static SINGLE: Cell<bool> = const { Cell::new(false) };
}

/// Threads the kernels split work over: candle's pool workers plus the calling thread (one
/// inside [`with_threads`]`(1, ..)`).
pub(crate) fn threads() -> usize {
    if SINGLE.get() {
        1
    } else {
        candle_core::utils::barrier_pool().n_workers() + 1
    }
}

/// Floating-point operations below which one thread beats several. Measured with
/// `cargo bench --bench thread_choice` on 2 cores (README, "Threads"): up to about 20 MFLOP one
/// thread won on an idle machine too; at 110 MFLOP every core won by 7% when idle but lost by
/// 28% when the cores were busy with other programs; from about 1.5 GFLOP every core won both
/// ways. Below this, work stays on the calling thread.
pub const SINGLE_THREAD_BELOW_FLOPS: f64 = 100e6;

/// A fixed thread count for [`threads_for_flops`] to answer (0: choose by the work's size).
static THREADS_OVERRIDE: AtomicUsize = AtomicUsize::new(0);

/// Makes [`threads_for_flops`] answer `threads` whatever the work (`None`: choose by its size
/// again). For benchmarks that compare the choice with a fixed count.
pub fn set_threads_override(threads: Option<usize>) {
    THREADS_OVERRIDE.store(threads.unwrap_or(0), Ordering::Relaxed);
}

/// Threads to give work of `flops` floating-point operations: one below
/// [`SINGLE_THREAD_BELOW_FLOPS`], where handing work to other threads costs more than it
/// saves, else every core.
pub fn threads_for_flops(flops: f64) -> usize {
    match THREADS_OVERRIDE.load(Ordering::Relaxed) {
        0 => {}
        n => return n,
    }
    if flops < SINGLE_THREAD_BELOW_FLOPS {
        1
    } else {
        candle_core::utils::get_num_threads().max(1)
    }
}

/// Runs `f` with at most `threads` threads: with one, candle's matmuls (which share work over
/// rayon) run on a one-thread rayon pool and the fused kernels run inline, so no work waits on
/// another thread. With more, `f` runs as it is, on every core. Nested calls keep the outer
/// choice.
pub fn with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    if threads > 1 || SINGLE.get() {
        return f();
    }
    thread_local! {
        /// Each calling thread gets its own one-thread pool, so two callers (the app's worker
        /// and a training run) never queue behind each other.
        static ONE: OnceLock<Option<rayon::ThreadPool>> = const { OnceLock::new() };
    }
    let single = move || {
        SINGLE.set(true);
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                SINGLE.set(false);
            }
        }
        let _reset = Reset;
        f()
    };
    ONE.with(|pool| {
        let pool = pool.get_or_init(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(|_| "glassbox-single".into())
                .build()
                .ok()
        });
        match pool {
            Some(pool) => pool.install(single),
            // No thread for the pool: the kernels still run inline.
            None => single(),
        }
    })
}

/// Runs `f` on every task, spread over candle's worker pool; the calling thread takes part and
/// the call returns when all tasks are done. A panic in a task is re-raised here.
pub(crate) fn run<T: Send>(tasks: Vec<T>, f: impl Fn(T) + Sync) {
    let n = tasks.len();
    let pool = candle_core::utils::barrier_pool();
    if n <= 1 || pool.n_workers() == 0 || INSIDE.get() || SINGLE.get() {
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
