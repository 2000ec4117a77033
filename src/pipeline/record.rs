//! Stage 3, record: outcomes into the store, counts into the tally,
//! progress out.
//!
//! [`outcome`] is plain code: one settled conversation → the row to store
//! and the progress event, counted in the tally. The wiring saves a free
//! analyzer's batch in one transaction (no fsync; one progress message per
//! batch) and a paid call's outcome through the StoreActor's durable
//! batching, holding its AnalyzerActor's lease until the outcome is on disk.

use uuid::Uuid;

use super::{AnalyzeStop, Pipeline, Recording, Settled, Tally};
use crate::analyze::actor::Lease;
use crate::model::ConversationStatus;
use crate::progress::actor::Update;
use crate::progress::{ConversationOutcome, ProgressEvent};
use crate::store::actor::{SaveOutcome, SaveOutcomes, StoreActor};
use crate::store::{ConversationRecord, ConversationResult, LoadedConversation};

/// The row to store for a settled conversation, and its progress event;
/// counts it in `tally`.
pub(super) fn outcome(
    upload_id: Uuid,
    conversation: &LoadedConversation,
    settled: Settled,
    tally: &mut Tally,
) -> (ConversationResult, ProgressEvent) {
    let mut failure = None;
    let mut endpoint = None;
    let (status, analysis, content_key, event) = match settled {
        Settled::Analyzed {
            analysis,
            key,
            usage,
            endpoint: by,
        } => {
            endpoint = by;
            tally.counts.analyzed += 1;
            (
                ConversationStatus::Analyzed,
                Some(analysis),
                Some(key),
                ConversationOutcome::Analyzed(usage),
            )
        }
        Settled::Skipped { analysis, key } => {
            tally.counts.skipped_already_processed += 1;
            (
                ConversationStatus::SkippedAlreadyProcessed,
                Some(analysis),
                Some(key),
                ConversationOutcome::Skipped,
            )
        }
        Settled::Failed {
            kind,
            reason,
            usage,
            endpoint: by,
        } => {
            endpoint = by;
            tally.counts.failed += 1;
            failure = Some(kind);
            (
                ConversationStatus::Failed,
                None,
                None,
                ConversationOutcome::Failed { reason, usage },
            )
        }
    };
    let mut record =
        ConversationRecord::new(&conversation.counts, status).with_facets(&conversation.facets);
    record.failure = failure;
    record.endpoint = endpoint;
    match &event {
        ConversationOutcome::Analyzed(usage) => record.usage = *usage,
        ConversationOutcome::Failed { reason, usage } => {
            record.usage = *usage;
            record.error = Some(reason.clone());
        }
        ConversationOutcome::Skipped => {}
    }
    let result = ConversationResult {
        upload_id,
        conversation_id: conversation.conversation.id.clone(),
        record,
        analysis,
        content_key,
    };
    (result, ProgressEvent::Conversation(event))
}

/// A batch on its way to the store, and the progress to report once it is
/// committed.
pub(super) struct Saving {
    request: actix::dev::Request<StoreActor, SaveOutcomes>,
    upload_id: Uuid,
    events: Vec<ProgressEvent>,
}

impl Pipeline {
    /// Sends a free analyzer's batch to the store (one transaction, not
    /// durable) without waiting: [`Pipeline::saved`] waits, then reports
    /// the batch's progress in one message.
    pub(super) fn save_batch(
        &self,
        upload_id: Uuid,
        tally: &mut Tally,
        settled: Vec<(LoadedConversation, Settled)>,
    ) -> Saving {
        let mut results = Vec::with_capacity(settled.len());
        let mut events = Vec::with_capacity(settled.len());
        for (conversation, s) in settled {
            let (result, event) = outcome(upload_id, &conversation, s, tally);
            results.push(result);
            events.push(event);
        }
        Saving {
            request: self.store.send(SaveOutcomes {
                results,
                durable: false,
            }),
            upload_id,
            events,
        }
    }

    /// Waits for a batch sent by [`Pipeline::save_batch`] to be committed.
    pub(super) async fn saved(&self, saving: Saving) -> Result<(), AnalyzeStop> {
        saving
            .request
            .await
            .map_err(|_| AnalyzeStop::shutting_down())?
            .map_err(AnalyzeStop::Store)?;
        self.progress.do_send(Update {
            upload_id: saving.upload_id,
            events: saving.events,
        });
        Ok(())
    }

    /// Records one outcome of a costly analyzer; its lease (if any) is held
    /// until the outcome is committed.
    pub(super) async fn record_one(
        &self,
        upload_id: Uuid,
        tally: &mut Tally,
        conversation: &LoadedConversation,
        settled: Settled,
        lease: Option<Lease>,
    ) -> Result<(), AnalyzeStop> {
        let (result, event) = outcome(upload_id, conversation, settled, tally);
        let durable = self
            .store
            .send(SaveOutcome(result))
            .await
            .map_err(|_| AnalyzeStop::shutting_down())?
            .map_err(AnalyzeStop::Store)?;
        if let Some(lease) = lease {
            // The actor stays reserved until the outcome is on disk: calls that
            // cost money and are not yet durable never exceed the pool size.
            actix::spawn(async move {
                let _ = durable.await;
                drop(lease);
            });
        }
        self.progress(upload_id, event);
        Ok(())
    }
}

impl Recording {
    /// Waits for the batch sent last, then sends the settled one.
    pub(super) async fn record_settled(
        &mut self,
        pipeline: &Pipeline,
        upload_id: Uuid,
        tally: &mut Tally,
    ) -> Result<(), AnalyzeStop> {
        if let Some(previous) = self.saving.take() {
            pipeline.saved(previous).await?;
        }
        if let Some(settled) = self.settled.take() {
            self.saving = Some(pipeline.save_batch(upload_id, tally, settled));
        }
        Ok(())
    }

    /// Records what is left and waits for it to be committed.
    pub(super) async fn finish(
        mut self,
        pipeline: &Pipeline,
        upload_id: Uuid,
        tally: &mut Tally,
    ) -> Result<(), AnalyzeStop> {
        self.record_settled(pipeline, upload_id, tally).await?;
        if let Some(last) = self.saving.take() {
            pipeline.saved(last).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{FailureKind, LlmUsage};
    use crate::model::{Conversation, Message, Role};
    use crate::store::MessageCounts;

    fn loaded() -> LoadedConversation {
        let messages = vec![
            Message {
                role: Role::Customer,
                text: "no power".into(),
                timestamp: None,
                time_ms: Some(5),
                sender_name: None,
                autoresponse: false,
            },
            Message {
                role: Role::Bot,
                text: "dial *977#".into(),
                timestamp: None,
                time_ms: Some(3),
                sender_name: None,
                autoresponse: true,
            },
        ];
        LoadedConversation {
            facets: Default::default(),
            counts: MessageCounts {
                messages: 9,
                ..MessageCounts::of(&messages)
            },
            conversation: std::sync::Arc::new(Conversation {
                id: "c1".into(),
                messages,
            }),
        }
    }

    #[test]
    fn a_failure_is_stored_with_its_reason_and_usage_and_counted() {
        let mut tally = Tally::default();
        let usage = LlmUsage {
            requests: 3,
            ..LlmUsage::default()
        };
        let (result, event) = outcome(
            Uuid::nil(),
            &loaded(),
            Settled::Failed {
                kind: FailureKind::InvalidReply,
                reason: "invalid JSON reply".into(),
                usage,
                endpoint: Some("east".into()),
            },
            &mut tally,
        );
        assert_eq!(tally.counts.failed, 1);
        assert_eq!(result.record.status, ConversationStatus::Failed);
        assert_eq!(result.record.error.as_deref(), Some("invalid JSON reply"));
        assert_eq!(result.record.failure, Some(FailureKind::InvalidReply));
        assert_eq!(result.record.usage, usage);
        assert_eq!(result.record.endpoint.as_deref(), Some("east"));
        assert_eq!(
            result.record.messages, 9,
            "counts of every message, loaded or not"
        );
        assert_eq!(result.record.autoresponses, 1);
        assert_eq!(result.record.started_ms, Some(3));
        assert!(result.analysis.is_none() && result.content_key.is_none());
        assert!(matches!(
            event,
            ProgressEvent::Conversation(ConversationOutcome::Failed { .. })
        ));
    }
}
