//! The allocator the server and bench binaries run the engine with.
//!
//! glibc malloc spent about a quarter of the engine's CPU time under load (many threads
//! allocating and freeing sled nodes, records and connection buffers at once); mimalloc
//! does the same work in far less. Hosts that embed the engine choose their own allocator.

/// The global allocator type; a binary declares
/// `#[global_allocator] static A: hallway_runtime::alloc::Allocator = hallway_runtime::alloc::Allocator;`.
pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_purge_delay` in mimalloc's option enum (the same index in its v2 and v3).
const PURGE_DELAY_OPTION: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays committed before mimalloc returns it to the OS, in ms: short,
/// so a backlog's resident set follows what is live (`docs/decisions.md`, the allocator).
const PURGE_DELAY_MS: std::os::raw::c_long = 100;

/// The environment variable through which an operator sets the purge delay instead (read by
/// mimalloc itself).
const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// Settles the allocator's options; call first thing in `main`. A purge delay the operator
/// gave in `MIMALLOC_PURGE_DELAY` is left as given.
pub fn tune() {
    if std::env::var_os(PURGE_DELAY_ENV).is_some() {
        return;
    }
    // SAFETY: sets one numeric option; mimalloc reads options atomically, at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY_OPTION, PURGE_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_index_is_the_purge_delay() {
        // mimalloc 3 defaults the purge delay to 1000 ms and no other option to that value,
        // so a wrong index would be seen here rather than silently tune something else.
        if std::env::var_os(PURGE_DELAY_ENV).is_some() {
            // The operator's value stands; mimalloc read it at start.
            return;
        }
        // SAFETY: reads one option.
        let before = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION) };
        assert_eq!(before, 1000);
        tune();
        // SAFETY: reads one option.
        let after = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY_OPTION) };
        assert_eq!(after, PURGE_DELAY_MS);
    }
}
