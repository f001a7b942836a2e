//! A data directory is used by one store at a time: a second open fails at once with
//! `StoreError::Locked`, whether the holder is this process or another one.

use hallway_store::{EventLog, SledStore, StoreError};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "HALLWAY_STORE_LOCK_CHILD_DIR";

/// Not a test of its own: the body of the child process `locked_by_another_process` starts.
/// It opens the store, says so, and holds it until its stdin closes.
#[test]
fn lock_holder_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = SledStore::open(std::path::Path::new(&dir)).expect("child opens");
    store.append(&[]).expect("child appends");
    store.flush().expect("child flushes");
    println!("HOLDING");
    std::io::stdout().flush().expect("stdout");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn locked_in_the_same_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = SledStore::open(dir.path()).expect("opens");
    let started = Instant::now();
    let err = SledStore::open(dir.path()).expect_err("second open must fail");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it must not wait for the lock"
    );
    match &err {
        StoreError::Locked { path } => assert_eq!(path, &dir.path().display().to_string()),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    drop(first);
    SledStore::open(dir.path()).expect("opens once the first is closed");
}

#[test]
fn locked_by_another_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "lock_holder_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            // libtest may print "test lock_holder_child ... " on the same line first.
            Some(Ok(line)) if line.ends_with("HOLDING") => break,
            Some(Ok(_)) => continue,
            other => panic!("the child ended before holding the store: {other:?}"),
        }
    }
    let started = Instant::now();
    let err = SledStore::open(dir.path()).expect_err("must fail while the child holds it");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it must not wait for the lock"
    );
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");

    drop(child.stdin.take());
    let status = child.wait().expect("waits");
    assert!(status.success(), "child failed: {status}");
    let store = SledStore::open(dir.path()).expect("opens once the child is gone");
    assert_eq!(store.last_seq().expect("last"), 1);
}
