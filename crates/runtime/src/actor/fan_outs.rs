//! Fan-outs shared by the consecutive publishes of one batch. A store keeps a fan-out's
//! deliveries in one record (the sled store: one bucket key), a new key per publish was most
//! of what the deliveries' history cost the API path (`docs/decisions.md`, buckets shared by
//! the publishes of a batch), and the publishes of one batch are written together anyway.
//! Sans-IO: the actor asks before deciding a publish and tells what it decided.

use hallway_domain::{CommandKind, Event, FanOutId};

/// Most deliveries a shared fan-out takes before the next publish starts another: every
/// batch that records an outcome in it rewrites the whole record, so it stays small.
const SHARED_MAX: u32 = 16;

/// The fan-out the open batch's publishes share, and its next free delivery number.
#[derive(Debug, Default)]
pub(crate) struct FanOuts {
    open: Option<(FanOutId, u32)>,
}

impl FanOuts {
    /// Points a publish at the open shared fan-out while it has room (otherwise the publish
    /// keeps its own fresh one, which the next publishes share). Returns the fan-out the
    /// publish will use; `None` for other commands.
    pub(crate) fn assign(&self, kind: &mut CommandKind) -> Option<FanOutId> {
        let CommandKind::Publish {
            fan_out,
            first_index,
            ..
        } = kind
        else {
            return None;
        };
        if let Some((shared, next)) = self.open {
            if next < SHARED_MAX {
                *fan_out = shared;
                *first_index = next;
            }
        }
        Some(*fan_out)
    }

    /// What a publish in `fan_out` decided: the next publish numbers its deliveries after
    /// these (paused ones included).
    pub(crate) fn decided(&mut self, fan_out: FanOutId, events: &[Event]) {
        let next = events
            .iter()
            .flat_map(|e| match e {
                Event::EventPublished { deliveries, .. }
                | Event::DeliveriesPaused { deliveries, .. } => deliveries.as_slice(),
                _ => &[],
            })
            .filter(|(d, _)| d.fan_out() == fan_out)
            .map(|(d, _)| d.index().saturating_add(1))
            .max();
        if let Some(next) = next {
            self.open = Some((fan_out, next));
        }
    }

    /// The open batch went to the store: the next batch's publishes start a new fan-out.
    pub(crate) fn batch_closed(&mut self) {
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hallway_domain::envelope::PreparedEvent;
    use hallway_domain::{
        AccountId, BodyDigest, EventId, ProjectId, Timestamp, WebhookId,
        SESSION_PROCESSING_COMPLETED,
    };

    fn fan(n: u8) -> FanOutId {
        FanOutId::from_bytes([n; 16])
    }

    fn publish(own: FanOutId) -> CommandKind {
        CommandKind::Publish {
            account_id: AccountId::from("acc_1"),
            event: PreparedEvent {
                event_id: None,
                event_type: SESSION_PROCESSING_COMPLETED.into(),
                project_id: ProjectId::from("prj_1"),
                fields_json: String::new(),
                digest: BodyDigest::default(),
            },
            fresh_event_id: EventId::from("evt_1"),
            fan_out: own,
            first_index: 0,
            remembered: None,
        }
    }

    fn published(fan_out: FanOutId, first: u32, n: u32) -> Event {
        Event::EventPublished {
            account_id: AccountId::from("acc_1"),
            event_id: EventId::from("evt_1"),
            event_type: SESSION_PROCESSING_COMPLETED.into(),
            project_id: ProjectId::from("prj_1"),
            digest: BodyDigest::default(),
            body: String::new(),
            deliveries: (first..first + n)
                .map(|i| (fan_out.delivery(i), WebhookId::from("wh_1")))
                .collect(),
            first_due: Timestamp(0),
            at: Timestamp(0),
        }
    }

    /// The fan-out and first number a publish command carries.
    fn numbering(kind: &CommandKind) -> (FanOutId, u32) {
        match kind {
            CommandKind::Publish {
                fan_out,
                first_index,
                ..
            } => (*fan_out, *first_index),
            other => panic!("not a publish: {other:?}"),
        }
    }

    #[test]
    fn a_batchs_publishes_share_a_fan_out_until_it_is_full_then_start_another() {
        let mut f = FanOuts::default();
        let mut k = publish(fan(1));
        assert_eq!(f.assign(&mut k), Some(fan(1)), "the first keeps its own");
        f.decided(fan(1), &[published(fan(1), 0, 5)]);
        let mut k = publish(fan(2));
        assert_eq!(f.assign(&mut k), Some(fan(1)));
        assert_eq!(
            numbering(&k),
            (fan(1), 5),
            "numbered after the first's five"
        );
        f.decided(fan(1), &[published(fan(1), 5, 12)]);
        // Seventeen numbers taken: the next publish keeps its own fan-out and others share it.
        let mut k = publish(fan(3));
        assert_eq!(f.assign(&mut k), Some(fan(3)));
        assert_eq!(numbering(&k), (fan(3), 0));
        f.decided(fan(3), &[published(fan(3), 0, 1)]);
        let mut k = publish(fan(4));
        f.assign(&mut k);
        assert_eq!(numbering(&k), (fan(3), 1));
    }

    #[test]
    fn a_publish_without_deliveries_takes_no_number_and_a_new_batch_starts_afresh() {
        let mut f = FanOuts::default();
        f.decided(fan(1), &[published(fan(1), 0, 2)]);
        let mut k = publish(fan(2));
        f.assign(&mut k);
        f.decided(fan(1), &[published(fan(1), 2, 0)]);
        let mut k = publish(fan(3));
        f.assign(&mut k);
        assert_eq!(numbering(&k), (fan(1), 2));
        f.batch_closed();
        let mut k = publish(fan(5));
        assert_eq!(f.assign(&mut k), Some(fan(5)));
        assert_eq!(numbering(&k), (fan(5), 0));
        let mut other = CommandKind::Resume;
        assert_eq!(f.assign(&mut other), None);
    }
}
