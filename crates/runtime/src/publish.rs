//! Publishing: the envelope's check, what the store remembers of the host's event id, and
//! the receipt.

use crate::{ids, EngineError, EngineHandle, PublishReceipt};
use hallway_domain::{envelope, AccountId, CommandKind, Event, EventId, IdempotencyKey, Rejection};

impl EngineHandle {
    /// Whether the filter in front of the store's published ids holds every id the store had
    /// when the engine opened (it is filled in the background): from then on, a publish whose
    /// id it never saw does not read the store.
    pub fn published_filter_ready(&self) -> bool {
        self.published_filter.is_ready()
    }

    /// Publishes an event (the raw JSON body the host posts). A repeated `id` answers the
    /// first publish's receipt with `duplicate: true` and sends nothing.
    pub async fn publish(
        &self,
        account: &AccountId,
        raw_json: &[u8],
    ) -> Result<PublishReceipt, EngineError> {
        let event = envelope::prepare(raw_json, &self.policy)?;
        // A fresh id only when the host gave none.
        let fresh_event_id = match &event.event_id {
            Some(id) => id.clone(),
            None => EventId::from(ids::event_id(&*self.random)),
        };
        // Memory keeps only the last seconds of ids; the store has the whole window. Read
        // inline like the history reads (its pages are cached while ids are published), and
        // only for an id the filter may have seen: the store cannot know one it has not.
        let read = self.expiries.current();
        let remembered = match &event.event_id {
            Some(id) => {
                let key = IdempotencyKey::of(account, id);
                if self.published_filter.check_and_add(&key, self.now()) {
                    self.store.published(&key)?
                } else {
                    None
                }
            }
            None => None,
        };
        let result = self
            .exec_after_read(
                CommandKind::Publish {
                    account_id: account.clone(),
                    event,
                    fresh_event_id,
                    fan_out: ids::fan_out(&*self.random, self.now()),
                    first_index: 0,
                    remembered,
                },
                Some(read),
                |events, _| match events.first() {
                    Some(Event::EventPublished {
                        event_id,
                        deliveries,
                        ..
                    }) => Some((event_id.clone(), deliveries.len() as u32)),
                    _ => None,
                },
            )
            .await;
        match result {
            Ok(Some((event_id, deliveries))) => Ok(PublishReceipt {
                event_id,
                deliveries,
                duplicate: false,
            }),
            Ok(None) => Err(EngineError::Closed),
            Err(EngineError::Rejected(Rejection::EventExists {
                event_id,
                deliveries,
            })) => {
                self.metrics.duplicate_publish();
                Ok(PublishReceipt {
                    event_id,
                    deliveries,
                    duplicate: true,
                })
            }
            Err(e) => Err(e),
        }
    }
}
