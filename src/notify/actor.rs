//! `WebhookActor`: the queue and the delivery loop of webhook events.
//!
//! The pipeline sends with [`Notifier::upload_ended`], the alerts with
//! [`Notifier::send`] (`try_send`, never waiting). At most `notify.queue_capacity` events are pending, counted in
//! [`WebhookStats`]: beyond that an event is dropped, logged and counted.
//! (The mailbox's own capacity bounds nothing here: actix gives every clone
//! of an address a slot of its own, and each upload's job has its clone.)
//! Each event is an `AtomicResponse`: the actor delivers one at a time,
//! retries included, in the order the uploads ended.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{Event, UploadEnd, UploadEvent, Webhook, WebhookStats};
use crate::store::actor::GetSummary;

/// An upload reached a final state (completed, failed or cancelled).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UploadEnded(pub UploadEnd);

/// An event ready to go (an alert, a digest).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Event);

/// Answered once every event queued before it has been delivered or given up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushWebhooks;

pub struct WebhookActor {
    webhook: Arc<Webhook>,
    /// Where the event's sentiment and satisfaction come from.
    summaries: Recipient<GetSummary>,
    stats: Arc<WebhookStats>,
    capacity: usize,
}

impl WebhookActor {
    pub fn new(
        webhook: Webhook,
        summaries: Recipient<GetSummary>,
        stats: Arc<WebhookStats>,
        capacity: usize,
    ) -> Self {
        Self {
            webhook: Arc::new(webhook),
            summaries,
            stats,
            capacity,
        }
    }
}

impl Actor for WebhookActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Room for every pending event and a flush (the bound is `Notifier`'s).
        ctx.set_mailbox_capacity(self.capacity.saturating_add(1));
        tracing::info!(host = self.webhook.host(), "webhook notifications on");
    }
}

impl Handler<UploadEnded> for WebhookActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: UploadEnded, _: &mut Self::Context) -> Self::Result {
        let webhook = self.webhook.clone();
        let summaries = self.summaries.clone();
        let stats = self.stats.clone();
        let end = msg.0;
        AtomicResponse::new(Box::pin(
            async move {
                let upload_id = end.upload_id;
                // Absent for an upload whose rows were never stored (an unreadable file).
                let summary = summaries
                    .send(GetSummary { upload_id })
                    .await
                    .ok()
                    .and_then(Result::ok);
                if let Some(event) = UploadEvent::new(end, summary.as_ref()) {
                    webhook.deliver(&Event::Upload(event), &stats).await;
                }
                stats.release();
            }
            .into_actor(self),
        ))
    }
}

impl Handler<Deliver> for WebhookActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Deliver, _: &mut Self::Context) -> Self::Result {
        let webhook = self.webhook.clone();
        let stats = self.stats.clone();
        AtomicResponse::new(Box::pin(
            async move {
                webhook.deliver(&msg.0, &stats).await;
                stats.release();
            }
            .into_actor(self),
        ))
    }
}

impl Handler<FlushWebhooks> for WebhookActor {
    type Result = ();
    fn handle(&mut self, _: FlushWebhooks, _: &mut Self::Context) {}
}

/// The pipeline's handle on webhooks: where events go, how many may wait,
/// and their counters.
#[derive(Clone)]
pub struct Notifier {
    pub to: Recipient<UploadEnded>,
    pub events: Recipient<Deliver>,
    pub stats: Arc<WebhookStats>,
    /// `notify.queue_capacity`.
    pub capacity: usize,
}

impl Notifier {
    /// Queues the event of an upload's end without waiting; a full queue
    /// (or a stopped actor) drops it, logged and counted.
    pub fn upload_ended(&self, end: UploadEnd) {
        let upload_id = end.upload_id;
        if !self.stats.reserve(self.capacity) {
            tracing::warn!(%upload_id, "webhook event dropped: the queue is full");
            return;
        }
        if let Err(e) = self.to.try_send(UploadEnded(end)) {
            self.stats.release();
            self.stats.count_dropped();
            let why = match e {
                SendError::Full(_) => "the queue is full",
                SendError::Closed(_) => "notifications have stopped",
            };
            tracing::warn!(%upload_id, "webhook event dropped: {why}");
        }
    }

    /// Queues a ready event without waiting, as [`Notifier::upload_ended`] does.
    pub fn send(&self, event: Event) {
        let name = event.name();
        if !self.stats.reserve(self.capacity) {
            tracing::warn!(event = name, "webhook event dropped: the queue is full");
            return;
        }
        if let Err(e) = self.events.try_send(Deliver(event)) {
            self.stats.release();
            self.stats.count_dropped();
            let why = match e {
                SendError::Full(_) => "the queue is full",
                SendError::Closed(_) => "notifications have stopped",
            };
            tracing::warn!(event = name, "webhook event dropped: {why}");
        }
    }
}

/// Waits up to `grace` for queued events to be delivered (at shutdown).
pub async fn flush(to: &Addr<WebhookActor>, grace: Duration) {
    if tokio::time::timeout(grace, to.send(FlushWebhooks))
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "stopping with webhook events still undelivered"
        );
    }
}
