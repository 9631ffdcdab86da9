//! A lower CPU priority for threads that work ahead of a bottleneck.
//!
//! `atr load` is bound by its single store writer, and its parser threads are always ahead of it:
//! their output waits in bounded channels. At equal priority the scheduler shared the two cores of
//! a small machine evenly between the writer, the parsers and the checkpointer, so the writer got
//! 0.6–0.75 of a core while parsed batches piled up. With the parsers niced they take what the
//! writer leaves: the 1M load took 56–60 s against 66–68 s alongside (docs/benchmarks.md). A server
//! sharing the machine with a load keeps its share too.

/// How many nice levels below the process these threads run (nice 19 measured no different).
const NICE_INCREMENT: i32 = 10;

/// Lowers the calling thread's priority (Linux keeps a nice value per thread). Best effort: where
/// that is not possible the thread runs as before, and only the speed differs.
pub fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::nice(NICE_INCREMENT) {
        tracing::debug!(error = %e, "could not lower a parser thread's priority");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::getpriority_process;

    #[test]
    fn only_the_lowered_thread_runs_at_the_lower_priority() {
        let before = getpriority_process(None).expect("this thread's priority");
        let lowered = std::thread::spawn(|| {
            super::lower_this_thread();
            getpriority_process(None).expect("the lowered thread's priority")
        })
        .join()
        .expect("the lowered thread");
        assert_eq!(lowered, (before + super::NICE_INCREMENT).min(19));
        assert_eq!(
            getpriority_process(None).expect("this thread's priority"),
            before,
            "the thread that spawned it keeps its priority"
        );
    }
}
