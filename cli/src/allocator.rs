//! The allocator's settings for batch runs. By default mimalloc hands memory freed for a second
//! back to the OS and takes fresh pages again for the next chunk, which the kernel must zero: a fifth
//! of `carecast score`'s CPU on a million rows (perf), 10.2 s against 8.1 s with purging off. A
//! batch run's memory is bounded by its chunks, so it keeps what it freed for the next one
//! instead (peak 437 -> 457 MiB on that run). The server keeps mimalloc's defaults.

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// mimalloc v3's `mi_option_purge_decommits` and `mi_option_purge_delay` (its `mi_option_e`;
/// the binding names v2's numbers): the test below checks that they read as those options'
/// documented defaults.
const PURGE_DECOMMITS: mi_option_t = 5;
const PURGE_DELAY: mi_option_t = 15;

/// Keeps freed memory for reuse rather than returning it to the OS. Called at the start of a
/// batch verb, before its threads start (mimalloc's option setters are not thread-safe).
pub fn keep_freed_memory() {
    // SAFETY: plain integer options, set before the run's threads start.
    unsafe {
        mi_option_set(PURGE_DELAY, -1);
        mi_option_set(PURGE_DECOMMITS, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers name the options meant: untouched, they hold their defaults in mimalloc v3's
    /// `src/options.c` (purge after 1,000 ms, purging decommits). A mimalloc that renumbers
    /// them fails here.
    #[test]
    fn the_option_numbers_are_the_purge_options() {
        // SAFETY: reads of plain integer options.
        let (delay, decommits) =
            unsafe { (libmimalloc_sys::mi_option_get(PURGE_DELAY), libmimalloc_sys::mi_option_get(PURGE_DECOMMITS)) };
        assert_eq!((delay, decommits), (1000, 1));
    }
}
