//! Why an attempt got no usable answer, in the history's classes and in words.

use super::BlockedTarget;
use hallway_domain::AttemptError;
use std::error::Error as StdError;
use std::io;

/// An error and its causes, outermost first. `io::Error::source` skips the error an
/// `io::Error` wraps (hyper-rustls nests the rustls error two `io::Error`s deep), so the
/// walk descends into it explicitly.
fn causes<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e| {
        match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        }
    })
}

/// An error in words: each distinct message of its causes, outermost first.
pub(super) fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in causes(err) {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Whether an error is the process running out of file descriptors (EMFILE, ENFILE).
pub(super) fn out_of_descriptors(err: &(dyn StdError + 'static)) -> bool {
    causes(err).any(|e| {
        e.downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .is_some_and(|code| code == EMFILE || code == ENFILE)
    })
}

/// "Too many open files" for the process and for the system, as Linux and the BSDs number them.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Maps an error to the history's classes by its causes: a refused address or a TLS failure
/// anywhere in them decides; otherwise a failure while `connecting`, or a reset connection,
/// is a connect failure, and anything else is an invalid response.
pub(super) fn classify(err: &(dyn StdError + 'static), connecting: bool) -> AttemptError {
    let mut reset = false;
    for e in causes(err) {
        if e.downcast_ref::<BlockedTarget>().is_some() {
            return AttemptError::BlockedTarget;
        }
        if e.downcast_ref::<rustls::Error>().is_some() {
            return AttemptError::Tls;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            reset |= matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionRefused
            );
        }
    }
    if connecting || reset {
        AttemptError::Connect
    } else {
        AttemptError::InvalidResponse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rustls_error_nested_in_io_errors_is_a_tls_failure() {
        let rustls = rustls::Error::General("bad certificate".into());
        let err = io::Error::other(io::Error::other(rustls));
        assert_eq!(classify(&err, true), AttemptError::Tls);
        assert!(
            describe(&err).contains("bad certificate"),
            "{}",
            describe(&err)
        );
    }

    #[test]
    fn a_reset_is_a_connect_failure_and_other_read_failures_are_invalid_responses() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&reset, false), AttemptError::Connect);
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(classify(&eof, false), AttemptError::InvalidResponse);
        assert_eq!(classify(&eof, true), AttemptError::Connect);
        let blocked = io::Error::other(BlockedTarget("10.0.0.1".parse().expect("ip")));
        assert_eq!(classify(&blocked, true), AttemptError::BlockedTarget);
    }

    #[test]
    fn running_out_of_descriptors_is_recognised_through_wrappers() {
        let emfile = io::Error::from_raw_os_error(EMFILE);
        assert!(out_of_descriptors(&io::Error::other(emfile)));
        assert!(!out_of_descriptors(&io::Error::from(
            io::ErrorKind::ConnectionRefused
        )));
    }
}
