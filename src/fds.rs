//! File descriptors shared between API connections and deliveries, so that clients of the API
//! can never take the descriptors the dispatcher needs to reach receivers.

/// Descriptors kept for the store's files, the listener, logs and the standard streams.
const RESERVED: usize = 64;

/// The least of each side a split leaves, however low the limit.
const FLOOR: usize = 8;

/// How many API connections and attempts under way the process can hold at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The API's connection cap.
    pub max_connections: usize,
    /// The dispatcher's in-flight cap.
    pub max_in_flight: usize,
}

/// Raises the soft descriptor limit to the hard one and fits both caps under it: when they
/// do not fit, the API gets a quarter of what is left and deliveries the rest.
pub fn split(max_connections: usize, max_in_flight: usize) -> Budget {
    let limit = raise_limit();
    let budget = fit(limit, max_connections, max_in_flight);
    if budget.max_connections != max_connections || budget.max_in_flight != max_in_flight {
        tracing::warn!(
            descriptor_limit = limit,
            max_connections = budget.max_connections,
            max_in_flight = budget.max_in_flight,
            "the descriptor limit is too low for the configured caps; lowered them (raise `ulimit -n`)"
        );
    }
    budget
}

/// The split for a given descriptor limit.
pub fn fit(limit: usize, max_connections: usize, max_in_flight: usize) -> Budget {
    let available = limit.saturating_sub(RESERVED);
    if max_connections.saturating_add(max_in_flight) <= available {
        return Budget {
            max_connections,
            max_in_flight,
        };
    }
    let connections = max_connections.min((available / 4).max(FLOOR));
    let in_flight = max_in_flight.min(available.saturating_sub(connections).max(FLOOR));
    Budget {
        max_connections: connections,
        max_in_flight: in_flight,
    }
}

#[cfg(unix)]
fn raise_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return usize::MAX;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

#[cfg(not(unix))]
fn raise_limit() -> usize {
    usize::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_that_fit_are_kept() {
        let b = fit(1 << 20, 1024, 1024);
        assert_eq!((b.max_connections, b.max_in_flight), (1024, 1024));
    }

    #[test]
    fn a_low_limit_leaves_deliveries_most_of_it() {
        let b = fit(256, 1024, 1024);
        assert_eq!((b.max_connections, b.max_in_flight), (48, 144));
        assert!(b.max_connections + b.max_in_flight + RESERVED <= 256);
        let tiny = fit(10, 1024, 1024);
        assert_eq!((tiny.max_connections, tiny.max_in_flight), (FLOOR, FLOOR));
    }
}
