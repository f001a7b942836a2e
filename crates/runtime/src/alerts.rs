//! The alert stream: alerts are logged events ([`hallway_domain::Event::AlertRaised`]), so a
//! subscriber reads those already in the log from its cursor, then new ones as batches
//! commit. Each alert's id is its place in the log, the same after any restart, so a
//! subscriber that records how far it got neither loses nor (beyond at least once) repeats one.

use hallway_domain::{Alert, Event, Timestamp};
use hallway_store::{EventStore, StoreError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tracing::{error, warn};

/// Where an alert is in the log: its record's sequence number and its index in the record.
/// Cursors order as the log does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertCursor {
    /// The log record.
    pub seq: u64,
    /// The event's index in the record.
    pub index: u32,
}

impl AlertCursor {
    /// The alert's stable id, as hosts receive it (`alt_` + 16 + 8 hex digits).
    pub fn id(self) -> String {
        format!("alt_{:016x}{:08x}", self.seq, self.index)
    }

    /// The place after every alert of record `seq`: a cursor for "read through `seq`".
    pub fn end_of(seq: u64) -> AlertCursor {
        AlertCursor {
            seq,
            index: u32::MAX,
        }
    }

    /// The first log record a reader after this cursor needs.
    pub fn next_record(self) -> u64 {
        if self.index == u32::MAX {
            self.seq.saturating_add(1)
        } else {
            self.seq
        }
    }

    /// Parses an id made by [`AlertCursor::id`].
    pub fn parse(id: &str) -> Option<AlertCursor> {
        let hex = id.strip_prefix("alt_")?;
        if hex.len() != 24 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(AlertCursor {
            seq: u64::from_str_radix(&hex[..16], 16).ok()?,
            index: u32::from_str_radix(&hex[16..], 16).ok()?,
        })
    }
}

/// One alert with its place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRecord {
    /// Its place, and so its id.
    pub cursor: AlertCursor,
    /// What happened.
    pub alert: Alert,
    /// When it was decided.
    pub at: Timestamp,
}

/// The alerts of one committed record.
pub(crate) fn of_record(seq: u64, events: &[Event]) -> Vec<AlertRecord> {
    events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::AlertRaised { alert, at } => Some(AlertRecord {
                cursor: AlertCursor {
                    seq,
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                },
                alert: alert.clone(),
                at: *at,
            }),
            _ => None,
        })
        .collect()
}

/// What the engine shares with alert subscribers.
#[derive(Clone)]
pub(crate) struct AlertHub {
    /// New alerts as their records commit.
    pub live: broadcast::Sender<AlertRecord>,
    /// The log from this record on is kept for a subscriber that has not read it yet
    /// (`u64::MAX`: nobody holds it).
    pub floor: Arc<AtomicU64>,
    /// The last record whose alerts are in `live` (stored after they were sent).
    pub committed: Arc<AtomicU64>,
}

/// A subscription to alerts: those in the log after a cursor, then new ones.
pub struct AlertStream {
    rx: mpsc::Receiver<AlertRecord>,
    caught_up: Arc<AtomicU64>,
}

impl AlertStream {
    /// The next alert; `None` once the engine stopped.
    pub async fn recv(&mut self) -> Option<AlertRecord> {
        self.rx.recv().await
    }

    /// The next alert if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<AlertRecord> {
        self.rx.try_recv().ok()
    }

    /// A record through which every alert has been handed to this stream: read this, then
    /// find nothing waiting, and every alert up to it has been received. A subscriber with
    /// nothing in hand can hold the log from the record after it.
    pub fn caught_up_through(&self) -> u64 {
        self.caught_up.load(Ordering::Acquire)
    }
}

impl AlertHub {
    pub(crate) fn new() -> Self {
        AlertHub {
            live: broadcast::channel(4096).0,
            floor: Arc::new(AtomicU64::new(u64::MAX)),
            committed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The last record truncation may remove, given it wants to remove through `seq`.
    pub(crate) fn truncate_through(&self, seq: u64) -> u64 {
        seq.min(self.floor.load(Ordering::Acquire).saturating_sub(1))
    }
}

/// Streams every alert after `after` (all of them for `None`): first those in the log, then
/// new ones. Ends when the engine stops or the receiver is dropped.
pub(crate) fn subscribe(
    hub: &AlertHub,
    store: Arc<dyn EventStore>,
    after: Option<AlertCursor>,
) -> AlertStream {
    let (tx, rx) = mpsc::channel(1024);
    let mut live = hub.live.subscribe();
    let caught_up = Arc::new(AtomicU64::new(0));
    let (progress, committed) = (caught_up.clone(), hub.committed.clone());
    tokio::spawn(async move {
        let mut last = after;
        loop {
            // The log first (subscribed before reading, so nothing falls in between).
            let from = last.map_or(1, AlertCursor::next_record);
            let store2 = store.clone();
            let read =
                crate::store_calls::spawn(&*store, move || read_alerts(&*store2, from)).await;
            let logged = match read {
                Ok(Ok(logged)) => logged,
                Ok(Err(e)) => {
                    error!(error = %e, "reading alerts from the log failed");
                    return;
                }
                Err(_) => return,
            };
            for a in logged {
                if last.is_some_and(|l| a.cursor <= l) {
                    continue;
                }
                last = Some(a.cursor);
                if tx.send(a).await.is_err() {
                    return;
                }
            }
            loop {
                // While idle, say how far everything has been handed on: read the committed
                // record first, then see nothing waiting.
                let received = tokio::select! {
                    r = live.recv() => r,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                        let c = committed.load(Ordering::Acquire);
                        if live.is_empty() {
                            progress.fetch_max(c, Ordering::AcqRel);
                        }
                        continue;
                    }
                };
                match received {
                    Ok(a) => {
                        if last.is_some_and(|l| a.cursor <= l) {
                            continue;
                        }
                        last = Some(a.cursor);
                        if tx.send(a).await.is_err() {
                            return;
                        }
                    }
                    // Fell behind the live feed: read the log again from where it got to.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(skipped = n, "alert subscriber lagged; rereading the log");
                        break;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    AlertStream { rx, caught_up }
}

fn read_alerts(store: &dyn EventStore, from: u64) -> Result<Vec<AlertRecord>, StoreError> {
    let mut from = from.max(1);
    let mut out = Vec::new();
    let mut retried = false;
    'read: loop {
        for record in store.read_log(from) {
            match record {
                Ok((seq, events)) => out.extend(of_record(seq, &events)),
                // Gone unread (nobody held the log): say so loudly, go on from what is left.
                Err(StoreError::Truncated {
                    from: asked,
                    first_kept,
                }) if !retried => {
                    error!(
                        asked,
                        first_kept, "alerts in the log before {first_kept} were truncated unread"
                    );
                    from = first_kept;
                    retried = true;
                    continue 'read;
                }
                Err(e) => return Err(e),
            }
        }
        return Ok(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_id_reads_back_as_its_cursor_and_ids_sort_as_cursors() {
        let a = AlertCursor { seq: 7, index: 3 };
        let b = AlertCursor { seq: 12, index: 0 };
        assert_eq!(AlertCursor::parse(&a.id()), Some(a));
        assert!(a.id() < b.id() && a < b);
        assert_eq!(AlertCursor::parse("alt_zz"), None);
    }
}
