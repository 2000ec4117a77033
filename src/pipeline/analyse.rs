//! Stage 2, analyse: every conversation without an outcome gets one.
//!
//! Conversations are read back in large batches (one store query for the
//! conversations still to do, one for the analyses the processed-content
//! index already holds). Then, by what a call costs:
//!
//! - **Free** (the lexicon): each batch is [`plan`]ned (answered from the
//!   index, or by the first of identical conversations in the batch, or
//!   analysed), split across the pool's threads as one message each, and
//!   recorded in one transaction without fsync. A crash loses at most what
//!   redoing costs nothing.
//! - **Costly** (an LLM): one call per conversation through a leased
//!   AnalyzerActor, `concurrency + batch_size` in flight, identical content
//!   waiting on the first call ([`Twins`]), each outcome durable before its
//!   lease goes back.

use std::collections::HashMap;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{AnalyzeStop, Pipeline, Settled, Tally};
use crate::analyze::actor::Lease;
use crate::analyze::{AnalyzeError, Analyzer, LlmUsage, Outcome};
use crate::model::Analysis;
use crate::store::LoadedConversation;
use crate::store::actor::{LoadPending, LookupProcessed};

/// The processed-content key of a loaded conversation: what the analyzer
/// reads, and (for a conversation too long to load whole) how many messages
/// it has, so a long conversation is not taken for its own start and end.
pub(super) fn content_key(analyzer: &Analyzer, loaded: &LoadedConversation) -> [u8; 32] {
    let key = analyzer.content_key(&loaded.conversation);
    if loaded.conversation.messages.len() == loaded.counts.messages as usize {
        return key;
    }
    let mut h = blake3::Hasher::new();
    h.update(&key);
    h.update(&loaded.counts.messages.to_le_bytes());
    *h.finalize().as_bytes()
}

/// What to do with one batch under a free analyzer.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Answered from the processed-content index.
    pub skipped: Vec<(LoadedConversation, Analysis)>,
    /// To analyse, each with its content key.
    pub run: Vec<(LoadedConversation, [u8; 32])>,
    /// Identical to `run[i]`: answered by its analysis.
    pub twins: Vec<(LoadedConversation, usize)>,
}

/// Plans a batch: `cached[i]` is what the index holds for `batch[i]`.
pub(super) fn plan(
    batch: Vec<LoadedConversation>,
    keys: Vec<[u8; 32]>,
    cached: Vec<Option<Analysis>>,
) -> Plan {
    let mut plan = Plan::default();
    let mut first: HashMap<[u8; 32], usize> = HashMap::new();
    for ((conversation, key), cached) in batch.into_iter().zip(keys).zip(cached) {
        if let Some(analysis) = cached {
            plan.skipped.push((conversation, analysis));
        } else if let Some(&i) = first.get(&key) {
            plan.twins.push((conversation, i));
        } else {
            first.insert(key, plan.run.len());
            plan.run.push((conversation, key));
        }
    }
    plan
}

/// Identical conversations within one upload under a costly analyzer: they
/// wait for the first one's analysis instead of paying twice.
#[derive(Default)]
pub(super) struct Twins {
    /// Content in flight → conversations waiting for its analysis.
    in_flight: HashMap<[u8; 32], Vec<LoadedConversation>>,
    /// Analyses finished here but perhaps not yet committed to the
    /// processed-content index (which only shows committed rows).
    recent: HashMap<[u8; 32], Analysis>,
}

/// Recent analyses kept; older ones are long committed (a batch commits
/// within `storage.flush_ms`), so the store answers for them.
const RECENT_ANALYSES: usize = 4096;

/// What a conversation needs, given what is known of its content.
#[derive(Debug, PartialEq)]
pub(super) enum Need {
    /// Answer it with this analysis.
    Answered(Analysis),
    /// Wait for the identical conversation in flight.
    Wait,
    /// Send it to the analyzer.
    Call,
}

impl Twins {
    /// What `conversation` (with `key`, and `cached` from the index) needs;
    /// one that must wait is kept here until [`Twins::settle`].
    pub fn need(
        &mut self,
        conversation: LoadedConversation,
        key: [u8; 32],
        cached: Option<Analysis>,
    ) -> (Need, Option<LoadedConversation>) {
        if let Some(analysis) = cached.or_else(|| self.recent.get(&key).cloned()) {
            return (Need::Answered(analysis), Some(conversation));
        }
        if let Some(waiting) = self.in_flight.get_mut(&key) {
            waiting.push(conversation);
            return (Need::Wait, None);
        }
        self.in_flight.insert(key, Vec::new());
        (Need::Call, Some(conversation))
    }

    /// The call for `key` ended: the conversations that waited on it, and
    /// its analysis remembered for later twins.
    pub fn settle(
        &mut self,
        key: &[u8; 32],
        analysis: Option<&Analysis>,
    ) -> Vec<LoadedConversation> {
        if let Some(analysis) = analysis {
            if self.recent.len() >= RECENT_ANALYSES {
                self.recent.clear();
            }
            self.recent.insert(*key, analysis.clone());
        }
        self.in_flight.remove(key).unwrap_or_default()
    }
}

/// What a dispatched call gives back: the conversation, its content key, the
/// outcome, and the actor's lease when it must outlive the call.
type Finished = (LoadedConversation, [u8; 32], Outcome, Option<Lease>);

impl Pipeline {
    /// Gives every conversation of the upload without an outcome one.
    pub(super) async fn analyse(
        &self,
        upload_id: Uuid,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<(), AnalyzeStop> {
        if self.analyzer.is_costly() {
            self.analyse_costly(upload_id, cancel, tally).await
        } else {
            self.analyse_free(upload_id, cancel, tally).await
        }
    }

    /// The next batch of conversations still to do, with their keys and what
    /// the processed-content index holds for them; `None` at the end.
    async fn next_batch(
        &self,
        upload_id: Uuid,
        after: &mut Option<String>,
    ) -> Result<
        Option<(
            Vec<LoadedConversation>,
            Vec<[u8; 32]>,
            Vec<Option<Analysis>>,
        )>,
        AnalyzeStop,
    > {
        let pending = self
            .query(LoadPending {
                upload_id,
                after: after.clone(),
                limit: self.batch_size,
            })
            .await?;
        let Some(next) = pending.next else {
            return Ok(None);
        };
        *after = Some(next);
        let keys: Vec<[u8; 32]> = pending
            .conversations
            .iter()
            .map(|c| content_key(&self.analyzer, c))
            .collect();
        let cached = if keys.is_empty() {
            Vec::new()
        } else {
            self.query(LookupProcessed { keys: keys.clone() }).await?
        };
        Ok(Some((pending.conversations, keys, cached)))
    }

    async fn analyse_free(
        &self,
        upload_id: Uuid,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<(), AnalyzeStop> {
        let mut after = None;
        while !cancel.is_cancelled() {
            let Some((batch, keys, cached)) = self.next_batch(upload_id, &mut after).await? else {
                break;
            };
            let plan = plan(batch, keys, cached);
            let calls = plan
                .run
                .iter()
                .map(|(c, _)| c.conversation.clone())
                .collect();
            let outcomes = self.pool.analyze_all(calls, cancel.clone()).await;
            // What a twin of `run[i]` gets: its analysis, or its failure (the
            // same content would fail the same way); nothing when cancelled.
            let twin_of: Vec<Option<Settled>> = outcomes
                .iter()
                .map(|o| match &o.result {
                    Ok(analysis) => Some(Settled::Skipped(analysis.clone())),
                    Err(AnalyzeError::Failed(reason)) => Some(Settled::Failed {
                        reason: reason.clone(),
                        usage: LlmUsage::default(),
                    }),
                    Err(_) => None,
                })
                .collect();
            let mut settled: Vec<(LoadedConversation, Settled)> = plan
                .skipped
                .into_iter()
                .map(|(c, a)| (c, Settled::Skipped(a)))
                .collect();
            let mut fatal = None;
            for ((conversation, key), outcome) in plan.run.into_iter().zip(outcomes) {
                tally.llm.add(&outcome.usage);
                let usage = outcome.usage;
                match outcome.result {
                    Ok(analysis) => settled.push((
                        conversation,
                        Settled::Analyzed {
                            analysis,
                            key,
                            usage,
                        },
                    )),
                    Err(AnalyzeError::Failed(reason)) => {
                        settled.push((conversation, Settled::Failed { reason, usage }))
                    }
                    Err(AnalyzeError::Cancelled) => {}
                    Err(AnalyzeError::Fatal(message)) => fatal = Some(message),
                }
            }
            for (conversation, i) in plan.twins {
                if let Some(s) = &twin_of[i] {
                    settled.push((conversation, s.clone()));
                }
            }
            self.record_batch(upload_id, tally, settled).await?;
            if let Some(message) = fatal {
                return Err(AnalyzeStop::Fatal(message));
            }
        }
        Ok(())
    }

    /// Sends every conversation without an outcome to the pool, keeping the
    /// pipe full, and stores each outcome as it arrives.
    async fn analyse_costly(
        &self,
        upload_id: Uuid,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<(), AnalyzeStop> {
        let window = self.pool.size() + self.batch_size;
        let mut in_flight = FuturesUnordered::new();
        let mut twins = Twins::default();
        let mut after = None;
        let mut stop: Option<AnalyzeStop> = None;

        'batches: while !cancel.is_cancelled() {
            let Some((batch, keys, cached)) = self.next_batch(upload_id, &mut after).await? else {
                break;
            };
            for ((conversation, key), cached) in batch.into_iter().zip(keys).zip(cached) {
                let (need, conversation) = twins.need(conversation, key, cached);
                let Some(conversation) = conversation else {
                    continue;
                };
                if let Need::Answered(analysis) = need {
                    self.record_one(
                        upload_id,
                        tally,
                        &conversation,
                        Settled::Skipped(analysis),
                        None,
                    )
                    .await?;
                    continue;
                }
                while in_flight.len() >= window {
                    let Some(finished) = in_flight.next().await else {
                        break;
                    };
                    if let Err(e) = self.finish(upload_id, tally, finished, &mut twins).await {
                        // Stop every other call of this upload at once.
                        cancel.cancel();
                        stop = Some(e);
                        break 'batches;
                    }
                }
                in_flight.push(self.dispatch(conversation, key, cancel.clone()));
            }
        }

        while let Some(finished) = in_flight.next().await {
            if let Err(e) = self.finish(upload_id, tally, finished, &mut twins).await {
                cancel.cancel();
                stop.get_or_insert(e);
            }
        }
        match stop {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn dispatch(
        &self,
        conversation: LoadedConversation,
        key: [u8; 32],
        cancel: CancellationToken,
    ) -> impl Future<Output = Finished> + use<> {
        let pool = self.pool.clone();
        async move {
            let Some(lease) = pool.lease(&cancel).await else {
                let outcome = Outcome {
                    result: Err(AnalyzeError::Cancelled),
                    usage: LlmUsage::default(),
                };
                return (conversation, key, outcome, None);
            };
            // The pool takes the conversation by value; keep a copy for the record.
            let outcome = lease
                .analyze(conversation.conversation.clone(), cancel)
                .await;
            (conversation, key, outcome, Some(lease))
        }
    }

    /// Stores one outcome, and settles conversations that waited on it.
    async fn finish(
        &self,
        upload_id: Uuid,
        tally: &mut Tally,
        (conversation, key, outcome, lease): Finished,
        twins: &mut Twins,
    ) -> Result<(), AnalyzeStop> {
        tally.llm.add(&outcome.usage);
        let waiting = twins.settle(&key, outcome.result.as_ref().ok());
        match outcome.result {
            Ok(analysis) => {
                for twin in &waiting {
                    let skipped = Settled::Skipped(analysis.clone());
                    self.record_one(upload_id, tally, twin, skipped, None)
                        .await?;
                }
                let analyzed = Settled::Analyzed {
                    analysis,
                    key,
                    usage: outcome.usage,
                };
                self.record_one(upload_id, tally, &conversation, analyzed, lease)
                    .await
            }
            // Cancelled calls leave no outcome: a resumed upload analyses them.
            Err(AnalyzeError::Cancelled) => Ok(()),
            Err(AnalyzeError::Fatal(message)) => Err(AnalyzeStop::Fatal(message)),
            Err(AnalyzeError::Failed(reason)) => {
                // Twins of a failed conversation fail with it: the same content
                // would very likely fail the same way, and paying for it twice is
                // what we promise not to do.
                for twin in &waiting {
                    let failed = Settled::Failed {
                        reason: reason.clone(),
                        usage: LlmUsage::default(),
                    };
                    self.record_one(upload_id, tally, twin, failed, None)
                        .await?;
                }
                let failed = Settled::Failed {
                    reason,
                    usage: outcome.usage,
                };
                self.record_one(upload_id, tally, &conversation, failed, lease)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Conversation, Message, Role, Satisfaction, SatisfactionLabel, Sentiment, SentimentLabel,
    };
    use crate::store::MessageCounts;

    fn loaded(id: &str) -> LoadedConversation {
        let messages = vec![Message {
            role: Role::Customer,
            text: format!("text of {id}"),
            timestamp: None,
            time_ms: None,
            sender_name: None,
            autoresponse: false,
        }];
        LoadedConversation {
            counts: MessageCounts::of(&messages),
            conversation: Conversation {
                id: id.into(),
                messages,
            },
        }
    }

    fn analysis(summary: &str) -> Analysis {
        Analysis {
            sentiment: Sentiment {
                label: SentimentLabel::Neutral,
                score: 0.0,
            },
            satisfaction: Satisfaction {
                score: 3,
                label: SatisfactionLabel::Neutral,
            },
            resolved: None,
            summary: summary.into(),
            analyzer: "lexicon".into(),
            model: "m".into(),
        }
    }

    #[test]
    fn a_plan_answers_from_the_index_runs_each_content_once_and_pairs_twins() {
        let batch = vec![
            loaded("a"),
            loaded("b"),
            loaded("c"),
            loaded("d"),
            loaded("e"),
        ];
        let keys = vec![[1; 32], [2; 32], [1; 32], [3; 32], [2; 32]];
        let cached = vec![None, None, None, Some(analysis("known")), None];
        let p = plan(batch, keys, cached);
        let ids = |v: &[(LoadedConversation, [u8; 32])]| {
            v.iter()
                .map(|(c, _)| c.conversation.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&p.run), ["a", "b"]);
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].0.conversation.id, "d");
        let twins: Vec<(String, usize)> = p
            .twins
            .iter()
            .map(|(c, i)| (c.conversation.id.clone(), *i))
            .collect();
        assert_eq!(twins, [("c".to_string(), 0), ("e".to_string(), 1)]);
    }

    #[test]
    fn twins_wait_for_the_first_call_and_are_answered_after() {
        let mut t = Twins::default();
        let key = [7; 32];
        assert_eq!(t.need(loaded("a"), key, None).0, Need::Call);
        assert_eq!(t.need(loaded("b"), key, None).0, Need::Wait);
        assert_eq!(t.need(loaded("c"), key, None).0, Need::Wait);
        let waiting = t.settle(&key, Some(&analysis("done")));
        assert_eq!(waiting.len(), 2);
        // Finished but perhaps not yet committed: answered from memory.
        assert_eq!(
            t.need(loaded("d"), key, None).0,
            Need::Answered(analysis("done"))
        );
        // A failed call remembers nothing.
        let other = [8; 32];
        assert_eq!(t.need(loaded("e"), other, None).0, Need::Call);
        assert!(t.settle(&other, None).is_empty());
        assert_eq!(t.need(loaded("f"), other, None).0, Need::Call);
    }
}
