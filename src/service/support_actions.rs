//! Group commit for RecordSupportAction (SPEC §8): support actions arrive
//! at a high rate, one small audit event each. One transaction per call
//! spends nearly all its time committing, so each replica has one writer
//! that takes every action waiting and commits them together. Each caller
//! still gets its own answer, sent only after the commit that holds its
//! event (nothing is acknowledged before it is durable); a refused action
//! (no active grant) is answered at once and writes nothing; if the commit
//! fails, every action in it gets the error and none was recorded.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::domain::Clock;
use crate::domain::audit::{Actor, ActorKind, AuditEvent, NewAuditEvent, action};
use crate::domain::portal::Portal;
use crate::domain::principal::SupportAgent;
use crate::domain::support::SupportAction;
use crate::error::{Error, Reason, Result};
use crate::store::{Committed, Store};

/// Actions one transaction holds at most.
const MAX_BATCH: usize = 256;
/// Scheduler turns the writer waits for the callers of its last batch.
const LINGER_TURNS: u32 = 16;
/// Actions waiting for the writer before callers wait to enqueue.
const QUEUE: usize = 4096;

/// One action, checked for shape and authority, waiting to be written.
pub(crate) struct PendingAction {
    pub portal: Portal,
    pub temporary_admin_id: Uuid,
    pub agent: SupportAgent,
    pub action: SupportAction,
    pub service_id: Uuid,
    pub request_id: Option<super::RequestId>,
    pub reply: oneshot::Sender<Result<AuditEvent>>,
}

#[derive(Clone)]
pub(crate) struct SupportActionWriter {
    queue: mpsc::Sender<PendingAction>,
}

impl SupportActionWriter {
    /// Starts the writer task; it ends when every handle is dropped.
    pub fn start(store: Store, clock: Arc<dyn Clock>) -> Self {
        let (queue, mut waiting) = mpsc::channel::<PendingAction>(QUEUE);
        tokio::spawn(async move {
            // Callers answered together tend to come back together: when
            // the last batch was shared, give them a few scheduler turns to
            // arrive before committing, instead of committing the first alone.
            let mut last_size = 1;
            while let Some(first) = waiting.recv().await {
                let mut batch = vec![first];
                let mut turns = 0;
                while batch.len() < MAX_BATCH {
                    match waiting.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) if batch.len() < last_size && turns < LINGER_TURNS => {
                            turns += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(_) => break,
                    }
                }
                last_size = batch.len();
                write_batch(&store, clock.as_ref(), batch).await;
            }
        });
        Self { queue }
    }

    pub async fn write(&self, pending: PendingAction) -> Result<()> {
        self.queue
            .send(pending)
            .await
            .map_err(|_| Error::new(Reason::ShuttingDown, "the server is shutting down"))
    }
}

/// What became of one action of a batch: an event of the batch's
/// transaction (by its position among the recorded ones), or a repeat of
/// an earlier one.
enum Outcome {
    Recorded(usize),
    Repeated(Uuid),
}

async fn write_batch(store: &Store, clock: &dyn Clock, batch: Vec<PendingAction>) {
    let now = clock.now();
    let mut tx = match store.begin_write(now).await {
        Ok(tx) => tx,
        Err(err) => return fail_all(batch, &err),
    };
    // Realms in a fixed order, as every multi-realm writer takes them.
    let realms: BTreeSet<Uuid> = batch.iter().map(|p| p.portal.realm_id).collect();
    for realm_id in realms {
        if let Err(err) = tx.lock_realm(realm_id).await {
            return fail_all(batch, &err);
        }
    }
    let portals: Vec<Uuid> = batch.iter().map(|p| p.portal.id).collect();
    let grants = match tx.open_grants(&portals).await {
        Ok(grants) => grants,
        Err(err) => return fail_all(batch, &err),
    };
    // Each action has an `Outcome`, or is refused and answered at once.
    let mut waiting: Vec<(oneshot::Sender<Result<AuditEvent>>, Outcome)> = Vec::new();
    let mut recorded = 0;
    for pending in batch {
        // The transaction sees keys remembered earlier in this batch too.
        let scope = format!("RecordSupportAction/{}", pending.service_id);
        let key = super::idempotency(&pending.request_id, &scope);
        if let Some(key) = &key {
            match tx.remembered_id(key).await {
                Ok(Some(id)) => {
                    waiting.push((pending.reply, Outcome::Repeated(id)));
                    continue;
                }
                Ok(None) => {}
                Err(err) if err.reason == Reason::RequestIdReused => {
                    let _ = pending.reply.send(Err(err));
                    continue;
                }
                Err(err) => {
                    let _ = pending.reply.send(Err(err.clone()));
                    return fail_waiting(waiting, &err);
                }
            }
        }
        let active = grants.get(&pending.portal.id).filter(|g| {
            g.temporary_account_id == pending.temporary_admin_id && g.is_active_at(now)
        });
        let Some(grant) = active else {
            let _ = pending.reply.send(Err(Error::new(
                Reason::GrantNotActive,
                "that temporary support admin has no active grant on this portal now",
            )));
            continue;
        };
        let mut event = NewAuditEvent::support(
            pending.portal.realm_id,
            action::SUPPORT_ACTION,
            Actor {
                kind: ActorKind::Account,
                id: pending.temporary_admin_id.to_string(),
                agent_id: Some(pending.agent.id),
                agent_name: Some(pending.agent.name),
            },
        )
        .for_request(grant.access_request_id)
        .in_portal(pending.portal.id)
        .target(&pending.action.target_type, &pending.action.target_id);
        event.details = pending.action.details;
        event = event
            .detail("support_action", &pending.action.action)
            .detail("support_grant_id", grant.id)
            .detail("recorded_by", pending.service_id);
        if let Some(key) = &key
            && let Err(err) = tx.remember(key, &event.id.to_string()).await
        {
            let _ = pending.reply.send(Err(err.clone()));
            return fail_waiting(waiting, &err);
        }
        tx.record(event);
        waiting.push((pending.reply, Outcome::Recorded(recorded)));
        recorded += 1;
    }
    let committed = match tx.commit_durably().await {
        Ok(committed) => committed,
        Err(err) => return fail_waiting(waiting, &err),
    };
    // The next batch need not wait for this one's numbers (W1).
    let store = store.clone();
    tokio::spawn(async move { answer(&store, committed, waiting).await });
}

/// Answers a committed batch's callers once its events are numbered.
async fn answer(
    store: &Store,
    committed: Committed,
    waiting: Vec<(oneshot::Sender<Result<AuditEvent>>, Outcome)>,
) {
    let events = match committed.numbered().await {
        Ok(events) => events,
        Err(err) => return fail_waiting(waiting, &err),
    };
    for (reply, outcome) in waiting {
        let answer = match outcome {
            Outcome::Recorded(i) => events
                .get(i)
                .cloned()
                .ok_or_else(|| Error::internal("support action was not appended")),
            Outcome::Repeated(id) => store.audit_event(id).await.and_then(|e| {
                e.ok_or_else(|| Error::internal("remembered support action is gone"))
            }),
        };
        let _ = reply.send(answer);
    }
}

fn fail_all(batch: Vec<PendingAction>, err: &Error) {
    for pending in batch {
        let _ = pending.reply.send(Err(err.clone()));
    }
}

fn fail_waiting<T>(waiting: Vec<(oneshot::Sender<Result<AuditEvent>>, T)>, err: &Error) {
    for (reply, _) in waiting {
        let _ = reply.send(Err(err.clone()));
    }
}
