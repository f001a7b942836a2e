//! The log: appending a batch (with its projection updates), flushing, reading back.

use super::bodies::BodyFiles;
use super::entries::load_payload_ref;
use super::idempotency::PublishedWrites;
use super::projection::{body_ref_writes, keep_open, Projection, Writes};
use super::truncate::Cut;
use super::{keys, lock, put_or_remove, spill, Op, SledStore};
use crate::codec;
use crate::{LogRecords, Seq, StoreError};
use hallway_domain::Event;
use sled::transaction::{ConflictableTransactionResult, Transactional, TransactionalTree};
use sled::IVec;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Appends one batch as the next record, with its projection updates and the old records a
/// truncation asked the appends to remove, in one transaction.
pub(super) fn append(store: &SledStore, events: &[Event]) -> Result<Seq, StoreError> {
    let logged = log_form(events);
    let record = IVec::from(codec::encode(&logged)?);
    // Check the pair: what is written must read back as what was meant (STYLE rule 10).
    // Decoding costs as much as encoding, so release builds skip it.
    #[cfg(debug_assertions)]
    {
        let back: Vec<Event> = codec::decode(keys::LOG, || "(new record)".into(), &record)?;
        debug_assert!(
            back.iter().eq(logged.iter().map(|e| &**e)),
            "a batch must survive its encoding"
        );
    }
    let t = &store.trees;
    let mut writer = store.writer();
    let seq = writer.next_seq;
    // Removed in this append's transaction, where sled's write lock is held anyway, rather
    // than beside it by another thread.
    let cut = Cut::for_append(&writer)?;
    let mut cache = store.buckets(&writer);
    let mut projection = Projection::new(t, &mut cache, seq);
    let mut published = PublishedWrites::default();
    for event in events {
        projection.apply(event)?;
        published.note(event);
    }
    let (mut writes, written, chunks) = projection.into_writes(
        &store.bodies,
        &writer.body_refs,
        &writer.open_chunks,
        &writer.open_runs,
    )?;
    let payloads = std::mem::take(&mut writes.payloads);
    writes.published = published.encoded(seq, payloads, &t.published)?;
    let counts = std::mem::take(&mut writes.body_refs);
    let meta_writes = body_ref_writes(&counts)?;
    let log_key = IVec::from(&keys::seq_key(seq)[..]);
    if writes.is_empty() && cut.is_none() {
        // One key in one tree is atomic by itself, and cheaper than a transaction.
        t.log.insert(log_key, record).op("append a record")?;
    } else if writes.spilled.is_empty() {
        // The spill index joins the transaction only when the batch changes it: the normal
        // path never does, and every tree in a transaction is locked for it.
        (
            &t.log,
            &t.history,
            &t.deliveries,
            &t.by_time,
            &t.meta,
            &t.published,
        )
            .transaction(|(log, history, deliveries, by_time, meta, published)| {
                let trees = [log, history, deliveries, by_time, meta, published];
                write_batch(trees, None, &log_key, &record, &cut, &meta_writes, &writes)
            })
            .op("append a record with its projections")?;
    } else {
        (
            &t.log,
            &t.history,
            &t.deliveries,
            &t.by_time,
            &t.meta,
            &t.published,
            &t.spilled,
        )
            .transaction(
                |(log, history, deliveries, by_time, meta, published, spilled)| {
                    let trees = [log, history, deliveries, by_time, meta, published];
                    write_batch(
                        trees,
                        Some(spilled),
                        &log_key,
                        &record,
                        &cut,
                        &meta_writes,
                        &writes,
                    )
                },
            )
            .op("append a record with its projections")?;
    }
    // Committed: the cache follows what the trees now hold.
    for w in written {
        cache.keep_committed(w.key, w.records, true);
    }
    drop(cache);
    for (webhook, chunk) in chunks {
        keep_open(&mut writer.open_chunks, webhook, chunk);
    }
    spill::keep_last(
        &mut writer.open_runs,
        std::mem::take(&mut writes.spill_lasts),
    );
    writer.next_seq = seq + 1;
    if let Some(cut) = &cut {
        cut.committed(&mut writer);
    }
    store.committed(&mut writer, counts);
    Ok(seq)
}

/// The writes of one append inside its transaction: the log record, the truncation it
/// carries, and every projection update. `trees` are log, history, deliveries, by-time,
/// meta and published, in that order.
fn write_batch(
    trees: [&TransactionalTree; 6],
    spilled: Option<&TransactionalTree>,
    log_key: &IVec,
    record: &IVec,
    cut: &Option<Cut>,
    meta_writes: &[(IVec, Option<IVec>)],
    writes: &Writes,
) -> ConflictableTransactionResult<(), Infallible> {
    let [log, history, deliveries, by_time, meta, published] = trees;
    log.insert_blind(log_key.clone(), record.clone())?;
    if let Some(cut) = cut {
        for k in &cut.keys {
            log.remove_blind(k.clone())?;
        }
        meta.insert_blind(keys::META_TRUNCATED_THROUGH, cut.marker.clone())?;
    }
    for (k, v) in meta_writes {
        put_or_remove(meta, k, v)?;
    }
    for (k, v) in &writes.history {
        history.insert_blind(k.clone(), v.clone())?;
    }
    for (k, v) in &writes.deliveries {
        deliveries.insert_blind(k.clone(), v.clone())?;
    }
    for (k, v) in &writes.by_time {
        by_time.insert_blind(k.clone(), v.clone())?;
    }
    writes.published.write(published, meta)?;
    if let Some(spilled) = spilled {
        for (k, v) in &writes.spilled {
            put_or_remove(spilled, k, v)?;
        }
    }
    Ok(())
}

/// Makes every committed write durable; concurrent callers share one sync. Then deletes
/// the body segments whose last reference went in a write it made durable.
pub(super) fn flush(store: &SledStore) -> Result<(), StoreError> {
    let Some(covered) = sync(store)? else {
        return Ok(());
    };
    let ready: Vec<u64> = {
        let mut writer = store.writer();
        let (ready, later) = std::mem::take(&mut writer.doomed)
            .into_iter()
            .partition(|(write, _)| *write <= covered);
        writer.doomed = later;
        ready.into_iter().map(|(_, segment)| segment).collect()
    };
    for segment in ready {
        // A failed delete leaves a file no count names; the next open deletes it.
        let _ = store.bodies.remove(segment);
    }
    Ok(())
}

/// The durable part of [`flush`], under the `durable` lock alone (writers never take it, and
/// it is released before the writer lock is taken). Returns the writes it covered, or
/// `None` if another caller's flush, started after ours committed, covered them.
fn sync(store: &SledStore) -> Result<Option<u64>, StoreError> {
    let target = store.written.load(Ordering::Acquire);
    let mut durable = lock(&store.durable);
    if *durable >= target {
        return Ok(None);
    }
    // Everything committed before this load is in sled's buffers and this flush takes it.
    let covered = store.written.load(Ordering::Acquire);
    store.db.flush().op("flush its log")?;
    // sled writes its log with `sync_file_range`, which syncs neither the file's size nor
    // the drive's write cache; `fdatasync` does both, so an acknowledged append survives a
    // power cut, not only a crash of the process.
    if let Some(file) = &store.data_file {
        file.sync_data()
            .map_err(StoreError::io("sync the database's data file"))?;
    }
    *durable = covered;
    Ok(Some(covered))
}

/// Reads the log from `from`; `with_bodies` puts back the bodies records leave out.
pub(super) fn read(store: &SledStore, from: Seq, with_bodies: bool) -> LogRecords<'_> {
    let payloads = with_bodies.then(|| (store.trees.published.clone(), store.bodies.clone()));
    let from = from.max(1);
    let truncated_through = store.writer().truncated_through;
    if from <= truncated_through {
        return Box::new(LogIter {
            inner: None,
            payloads,
            expected: from,
            first_error: Some(StoreError::Truncated {
                from,
                first_kept: truncated_through + 1,
            }),
        });
    }
    Box::new(LogIter {
        payloads,
        inner: Some(store.trees.log.range(keys::seq_key(from)..)),
        expected: from,
        first_error: None,
    })
}

/// The events as the log records them: bodies, which the events' entries point to (written in
/// the same transaction), are left out, and so is attempt detail, which only history keeps (in
/// the same transaction too) and which reading the log does not put back: log records stay
/// small to write, replay and truncate. Only events with a body or a detail are copied; the
/// rest are borrowed (serde encodes a `Cow` as what it holds, so the record's bytes are
/// those of a `Vec<Event>`).
fn log_form(events: &[Event]) -> Vec<std::borrow::Cow<'_, Event>> {
    use std::borrow::Cow;
    events
        .iter()
        .map(|e| match e {
            Event::EventPublished {
                account_id,
                event_id,
                event_type,
                project_id,
                digest,
                body,
                deliveries,
                first_due,
                at,
            } if !body.is_empty() => Cow::Owned(Event::EventPublished {
                account_id: account_id.clone(),
                event_id: event_id.clone(),
                event_type: event_type.clone(),
                project_id: project_id.clone(),
                digest: *digest,
                body: String::new(),
                deliveries: deliveries.clone(),
                first_due: *first_due,
                at: *at,
            }),
            Event::TestDeliveryCreated {
                delivery_id,
                webhook_id,
                account_id,
                event_id,
                event_type,
                body,
                at,
            } if !body.is_empty() => Cow::Owned(Event::TestDeliveryCreated {
                delivery_id: delivery_id.clone(),
                webhook_id: webhook_id.clone(),
                account_id: account_id.clone(),
                event_id: event_id.clone(),
                event_type: event_type.clone(),
                body: String::new(),
                at: *at,
            }),
            Event::AttemptSucceeded {
                delivery_id,
                attempt,
                status_code,
                duration,
                started_at,
                detail: Some(_),
                at,
            } => Cow::Owned(Event::AttemptSucceeded {
                delivery_id: delivery_id.clone(),
                attempt: *attempt,
                status_code: *status_code,
                duration: *duration,
                started_at: *started_at,
                detail: None,
                at: *at,
            }),
            Event::AttemptFailed {
                delivery_id,
                attempt,
                status_code,
                error,
                duration,
                started_at,
                next_due,
                detail: Some(_),
                at,
            } => Cow::Owned(Event::AttemptFailed {
                delivery_id: delivery_id.clone(),
                attempt: *attempt,
                status_code: *status_code,
                error: *error,
                duration: *duration,
                started_at: *started_at,
                next_due: *next_due,
                detail: None,
                at: *at,
            }),
            other => Cow::Borrowed(other),
        })
        .collect()
}

/// Reads the log from a sequence, checking that each record is the next one.
struct LogIter {
    inner: Option<sled::Iter>,
    /// Where bodies left out of log records are read back from; `None` leaves them out.
    payloads: Option<(sled::Tree, Arc<BodyFiles>)>,
    expected: Seq,
    /// An error to report before (instead of) anything else.
    first_error: Option<StoreError>,
}

impl Iterator for LogIter {
    type Item = Result<(Seq, Vec<Event>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.first_error.take() {
            self.inner = None;
            return Some(Err(e));
        }
        let item = self.inner.as_mut()?.next()?;
        let result = self.decode(item);
        // After an error the rest cannot be trusted to follow on: stop.
        if result.is_err() {
            self.inner = None;
        }
        Some(result)
    }
}

impl LogIter {
    /// Puts back a body [`log_form`] left out, from the payload stored with the record (gone
    /// only once retention removed it, when nothing needs it any more).
    fn restore_body(&self, event: &mut Event) -> Result<(), StoreError> {
        let (account_id, event_id, body) = match event {
            Event::EventPublished {
                account_id,
                event_id,
                body,
                deliveries,
                ..
            } if body.is_empty() && !deliveries.is_empty() => (account_id, event_id, body),
            Event::TestDeliveryCreated {
                account_id,
                event_id,
                body,
                ..
            } if body.is_empty() => (account_id, event_id, body),
            _ => return Ok(()),
        };
        let Some((payloads, bodies)) = &self.payloads else {
            return Ok(());
        };
        let key = keys::entry_key(account_id, event_id);
        if let Some(payload) = load_payload_ref(payloads, &key)? {
            *body = bodies.read(&payload.body)?;
        }
        Ok(())
    }

    fn decode(
        &mut self,
        item: sled::Result<(IVec, IVec)>,
    ) -> Result<(Seq, Vec<Event>), StoreError> {
        let (key, value) = item.op("read the log")?;
        let seq = keys::parse_seq(&key).ok_or_else(|| StoreError::Corrupt {
            tree: keys::LOG,
            key: keys::show_seq(&key),
            reason: "a log key must be 8 bytes".into(),
        })?;
        if seq != self.expected {
            return Err(StoreError::Gap {
                expected: self.expected,
                found: seq,
            });
        }
        let mut events: Vec<Event> = codec::decode(keys::LOG, || format!("seq {seq}"), &value)?;
        for e in &mut events {
            self.restore_body(e)?;
        }
        self.expected = seq + 1;
        Ok((seq, events))
    }
}
