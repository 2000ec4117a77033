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
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::budget::Budget;
use super::{AnalyzeStop, Pipeline, Recording, Settled, Tally};
use crate::analyze::actor::Lease;
use crate::analyze::{AnalyzeError, Analyzer, Outcome};
use crate::config::LlmMode;
use crate::model::Analysis;
use crate::store::KeyedPending;
use crate::store::LoadedConversation;
use crate::store::actor::LoadPending;

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

/// A map by content key. The keys are blake3 digests, which no input can
/// steer: foldhash, without SipHash's protection from chosen keys and its
/// cost.
pub(super) type ByKey<V> = HashMap<[u8; 32], V, foldhash::fast::RandomState>;

/// What to do with one batch under a free analyzer.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Answered from the processed-content index (or an earlier batch).
    pub skipped: Vec<(LoadedConversation, [u8; 32], Analysis)>,
    /// To analyse, each with its content key.
    pub run: Vec<(LoadedConversation, [u8; 32])>,
    /// Identical to `run[i]`: answered by its analysis.
    pub twins: Vec<(LoadedConversation, usize)>,
}

impl Plan {
    /// Every conversation of the batch (answered, analysed, twins), in that
    /// order.
    pub fn conversations_mut(&mut self) -> impl Iterator<Item = &mut LoadedConversation> {
        let skipped = self.skipped.iter_mut().map(|(c, _, _)| c);
        let run = self.run.iter_mut().map(|(c, _)| c);
        let twins = self.twins.iter_mut().map(|(c, _)| c);
        skipped.chain(run).chain(twins)
    }
}

/// Plans a batch: `cached[i]` is what the index holds for `batch[i]`, and
/// `recent` the analyses of earlier batches that the index may not show yet.
pub(super) fn plan(batch: Batch, recent: &Recent) -> Plan {
    let mut plan = Plan::default();
    let mut first: ByKey<usize> = ByKey::default();
    let Batch {
        conversations,
        keys,
        cached,
        ..
    } = batch;
    for ((conversation, key), cached) in conversations.into_iter().zip(keys).zip(cached) {
        if let Some(analysis) = cached.or_else(|| recent.get(&key).cloned()) {
            plan.skipped.push((conversation, key, analysis));
        } else if let Some(&i) = first.get(&key) {
            plan.twins.push((conversation, i));
        } else {
            first.insert(key, plan.run.len());
            plan.run.push((conversation, key));
        }
    }
    plan
}

/// A batch of conversations still to do, as read back.
pub(super) struct Batch {
    pub conversations: Vec<LoadedConversation>,
    pub keys: Vec<[u8; 32]>,
    /// What the processed-content index holds for each.
    pub cached: Vec<Option<Analysis>>,
    /// Where the next batch starts.
    pub next: String,
}

/// Batches of a free analyzer whose analyses [`Recent`] remembers.
///
/// Batch k + 1 is read while batch k is analysed, k − 1's rows are built
/// and sent, and k − 2's commit is awaited: the index that read sees may
/// lack all three.
const RECENT_BATCHES: usize = 3;

/// The analyses of the last [`RECENT_BATCHES`] batches of a free analyzer,
/// which the processed-content index may not show yet.
#[derive(Default)]
pub(super) struct Recent {
    /// Newest first.
    batches: [ByKey<Analysis>; RECENT_BATCHES],
}

impl Recent {
    fn get(&self, key: &[u8; 32]) -> Option<&Analysis> {
        self.batches.iter().find_map(|b| b.get(key))
    }

    /// A batch's analyses; the oldest remembered are forgotten.
    fn push(&mut self, analyses: ByKey<Analysis>) {
        self.batches.rotate_right(1);
        self.batches[0] = analyses;
    }
}

/// Identical conversations within one upload under a costly analyzer: they
/// wait for the first one's analysis instead of paying twice.
#[derive(Default)]
pub(super) struct Twins {
    /// Content in flight → conversations waiting for its analysis.
    in_flight: ByKey<Vec<LoadedConversation>>,
    /// Analyses finished here but perhaps not yet committed to the
    /// processed-content index (which only shows committed rows), the
    /// latest first: when `recent` is full it becomes `older`, so the last
    /// [`RECENT_ANALYSES`] are always kept (clearing them all at once
    /// forgot the ones just finished, whose twins in a batch read before
    /// their commit were then paid for again).
    recent: ByKey<Analysis>,
    older: ByKey<Analysis>,
}

/// Recent analyses kept, at least; older ones are long committed (a batch
/// commits within `storage.flush_ms`), so the store answers for them.
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
        if let Some(analysis) = cached
            .or_else(|| self.recent.get(&key).cloned())
            .or_else(|| self.older.get(&key).cloned())
        {
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
                self.older = std::mem::take(&mut self.recent);
            }
            self.recent.insert(*key, analysis.clone());
        }
        self.in_flight.remove(key).unwrap_or_default()
    }
}

/// A free analyzer's outcomes for a planned batch: what to record, the
/// analyses to remember for the next batches, and a fatal error if any
/// (after which the upload stops, the batch recorded first).
pub(super) fn settle_free(plan: Plan, outcomes: Vec<Outcome>, tally: &mut Tally) -> SettledBatch {
    let mut settled: Vec<(LoadedConversation, Settled)> =
        Vec::with_capacity(plan.skipped.len() + plan.run.len() + plan.twins.len());
    settled.extend(
        plan.skipped
            .into_iter()
            .map(|(c, key, analysis)| (c, Settled::Skipped { analysis, key })),
    );
    let mut analyses = ByKey::with_capacity_and_hasher(plan.run.len(), Default::default());
    // Where `run[i]` is in `settled`: none when cancelled (or fatal).
    let mut settled_at = vec![None; plan.run.len()];
    let mut fatal = None;
    for (i, ((conversation, key), outcome)) in plan.run.into_iter().zip(outcomes).enumerate() {
        tally.llm.add(&outcome.usage);
        let usage = outcome.usage;
        let endpoint = outcome.endpoint;
        let s = match outcome.result {
            Ok(analysis) => {
                analyses.insert(key, analysis.clone());
                Settled::Analyzed {
                    analysis,
                    key,
                    usage,
                    endpoint,
                }
            }
            Err(AnalyzeError::Failed { kind, detail }) => Settled::Failed {
                kind,
                reason: detail,
                usage,
                endpoint,
            },
            Err(AnalyzeError::Cancelled) => continue,
            Err(AnalyzeError::Fatal { kind, detail }) => {
                fatal = Some(AnalyzeStop::Fatal { kind, detail });
                continue;
            }
        };
        settled_at[i] = Some(settled.len());
        settled.push((conversation, s));
    }
    for (conversation, i) in plan.twins {
        if let Some(at) = settled_at[i] {
            let twin = settled[at].1.for_twin();
            settled.push((conversation, twin));
        }
    }
    (settled, analyses, fatal)
}

/// What [`settle_free`] gives: the conversations to record, the analyses to
/// remember, and a fatal error.
pub(super) type SettledBatch = (
    Vec<(LoadedConversation, Settled)>,
    ByKey<Analysis>,
    Option<AnalyzeStop>,
);

/// What a dispatched call gives back.
struct Finished {
    conversation: LoadedConversation,
    key: [u8; 32],
    outcome: Outcome,
    /// The actor's lease, when it must outlive the call.
    lease: Option<Lease>,
    /// What the call had reserved of the budget.
    reserved: f64,
}

impl Pipeline {
    /// Gives every conversation of the upload without an outcome one.
    pub(super) async fn analyse(
        &self,
        upload_id: Uuid,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<(), AnalyzeStop> {
        if let Analyzer::OpenAi(llm) = &self.analyzer
            && llm.mode() == LlmMode::Batch
        {
            // Batches first; sync calls take what they leave.
            self.analyse_batches(llm, upload_id, cancel, tally).await?;
            return self.analyse_costly(upload_id, cancel, tally).await;
        }
        if self.analyzer.is_costly() {
            self.analyse_costly(upload_id, cancel, tally).await
        } else {
            self.analyse_free(upload_id, cancel, tally).await
        }
    }

    /// The batch of conversations still to do after `after`, with their keys
    /// and what the processed-content index holds for them (read, keyed and
    /// looked up on a reader thread, in one round trip); `None` at the end.
    pub(super) async fn next_batch(
        &self,
        upload_id: Uuid,
        after: Option<String>,
    ) -> Result<Option<Batch>, AnalyzeStop> {
        let analyzer = self.analyzer.clone();
        let KeyedPending {
            pending,
            keys,
            cached,
        } = self
            .query(LoadPending {
                upload_id,
                after,
                limit: self.batch_size,
                key_of: Arc::new(move |c| content_key(&analyzer, c)),
                // A free analyzer's pool reads them beside its analysis
                // (`analyse_free`); for calls that take seconds, the reader.
                read_facets: self.analyzer.is_costly(),
                retry_failed: self.retry_failed,
            })
            .await?;
        let Some(next) = pending.next else {
            return Ok(None);
        };
        Ok(Some(Batch {
            conversations: pending.conversations,
            keys,
            cached,
            next,
        }))
    }

    /// A free analyzer's batches, overlapped: while one batch is analysed
    /// (on the pool's threads) the next is read (on a reader thread) and the
    /// last is recorded (its rows built here, committed on the StoreActor's
    /// thread), so the threads work at once and the pool waits on nothing
    /// but the few steps that decide its next batch (settling the last one,
    /// whose analyses the next plan answers twins from, and planning).
    async fn analyse_free(
        &self,
        upload_id: Uuid,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<(), AnalyzeStop> {
        let mut recent = Recent::default();
        let mut recording = Recording::default();
        let mut fetched = self.next_batch(upload_id, None).await?;
        while let Some(batch) = fetched.take() {
            if cancel.is_cancelled() {
                break;
            }
            let after = batch.next.clone();
            let mut plan = plan(batch, &recent);
            let analyse = plan
                .run
                .iter()
                .map(|(c, _)| Arc::clone(&c.conversation))
                .collect();
            let describe = plan
                .conversations_mut()
                .map(|c| Arc::clone(&c.conversation))
                .collect();
            // Polled in this order: the pool and the reader have their work
            // before the last batch's rows are built.
            let ((outcomes, facets), following, recorded) = tokio::join!(
                self.pool.analyze_all(analyse, describe, cancel.clone()),
                self.next_batch(upload_id, Some(after)),
                recording.record_settled(self, upload_id, tally),
            );
            // The store failed: nothing more can be recorded.
            recorded?;
            for (c, facets) in plan.conversations_mut().zip(facets) {
                c.facets = facets;
            }
            let (settled, analyses, fatal) = settle_free(plan, outcomes, tally);
            recent.push(analyses);
            recording.settled = Some(settled);
            let stop = match (fatal, following) {
                (None, Ok(next)) => {
                    fetched = next;
                    continue;
                }
                (Some(stop), _) | (None, Err(stop)) => stop,
            };
            // The batch is recorded before the upload stops.
            recording.finish(self, upload_id, tally).await?;
            return Err(stop);
        }
        recording.finish(self, upload_id, tally).await
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
        let mut in_flight: FuturesUnordered<_> = FuturesUnordered::new();
        let mut twins = Twins::default();
        let mut budget = Budget::new(self.analyzer.budget_usd(), tally.llm.cost_usd);
        let mut after = None;
        let mut stop: Option<AnalyzeStop> = None;

        'batches: while !cancel.is_cancelled() {
            let Some(batch) = self.next_batch(upload_id, after.take()).await? else {
                break;
            };
            after = Some(batch.next);
            let items = batch
                .conversations
                .into_iter()
                .zip(batch.keys)
                .zip(batch.cached);
            for ((conversation, key), cached) in items {
                let (need, conversation) = twins.need(conversation, key, cached);
                let Some(conversation) = conversation else {
                    continue;
                };
                if let Need::Answered(analysis) = need {
                    self.record_one(
                        upload_id,
                        tally,
                        &conversation,
                        Settled::Skipped { analysis, key },
                        None,
                    )
                    .await?;
                    continue;
                }
                let worst = self.analyzer.worst_case_cost(&conversation.conversation);
                // Wait for room in the window, and in the budget.
                loop {
                    if in_flight.len() < window && budget.try_reserve(worst) {
                        break;
                    }
                    let Some(finished): Option<Finished> = in_flight.next().await else {
                        // Nothing in flight, and still no room in the budget.
                        stop = Some(budget.exhausted(worst));
                        break 'batches;
                    };
                    budget.settle(finished.reserved, finished.outcome.usage.cost_usd);
                    if let Err(e) = self.finish(upload_id, tally, finished, &mut twins).await {
                        // Stop every other call of this upload at once.
                        cancel.cancel();
                        stop = Some(e);
                        break 'batches;
                    }
                }
                in_flight.push(self.dispatch(conversation, key, worst, cancel.clone()));
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
        reserved: f64,
        cancel: CancellationToken,
    ) -> impl Future<Output = Finished> + use<> {
        let pool = self.pool.clone();
        async move {
            let Some(lease) = pool.lease(&cancel).await else {
                let outcome = Outcome::local(Err(AnalyzeError::Cancelled));
                return Finished {
                    conversation,
                    key,
                    outcome,
                    lease: None,
                    reserved,
                };
            };
            let outcome = lease
                .analyze(Arc::clone(&conversation.conversation), cancel)
                .await;
            Finished {
                conversation,
                key,
                outcome,
                lease: Some(lease),
                reserved,
            }
        }
    }

    /// Stores one outcome, and settles conversations that waited on it.
    async fn finish(
        &self,
        upload_id: Uuid,
        tally: &mut Tally,
        finished: Finished,
        twins: &mut Twins,
    ) -> Result<(), AnalyzeStop> {
        let Finished {
            conversation,
            key,
            outcome,
            lease,
            ..
        } = finished;
        tally.llm.add(&outcome.usage);
        let waiting = twins.settle(&key, outcome.result.as_ref().ok());
        let settled = match outcome.result {
            Ok(analysis) => Settled::Analyzed {
                analysis,
                key,
                usage: outcome.usage,
                endpoint: outcome.endpoint,
            },
            Err(AnalyzeError::Failed { kind, detail }) => Settled::Failed {
                kind,
                reason: detail,
                usage: outcome.usage,
                endpoint: outcome.endpoint,
            },
            // Cancelled calls leave no outcome: a resumed upload analyses them.
            Err(AnalyzeError::Cancelled) => return Ok(()),
            Err(AnalyzeError::Fatal { kind, detail }) => {
                return Err(AnalyzeStop::Fatal { kind, detail });
            }
        };
        for twin in &waiting {
            self.record_one(upload_id, tally, twin, settled.for_twin(), None)
                .await?;
        }
        self.record_one(upload_id, tally, &conversation, settled, lease)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::analyze::LlmUsage;
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
            facets: Default::default(),
            counts: MessageCounts::of(&messages),
            conversation: Arc::new(Conversation {
                id: id.into(),
                messages,
            }),
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
            topic: None,
        }
    }

    #[test]
    fn a_plan_answers_from_the_index_runs_each_content_once_and_pairs_twins() {
        let batch = Batch {
            conversations: ["a", "b", "c", "d", "e", "f"].map(loaded).into(),
            keys: vec![[1; 32], [2; 32], [1; 32], [3; 32], [2; 32], [4; 32]],
            cached: vec![None, None, None, Some(analysis("known")), None, None],
            next: "f".into(),
        };
        let mut recent = Recent::default();
        recent.push(ByKey::from_iter([([4; 32], analysis("older"))]));
        for _ in 1..RECENT_BATCHES {
            recent.push(ByKey::default());
        }
        let p = plan(batch, &recent);
        let ids = |v: &[(LoadedConversation, [u8; 32])]| {
            v.iter()
                .map(|(c, _)| c.conversation.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&p.run), ["a", "b"]);
        let skipped: Vec<(&str, &str)> = p
            .skipped
            .iter()
            .map(|(c, _, a)| (c.conversation.id.as_str(), a.summary.as_str()))
            .collect();
        assert_eq!(skipped, [("d", "known"), ("f", "older")]);
        let twins: Vec<(String, usize)> = p
            .twins
            .iter()
            .map(|(c, i)| (c.conversation.id.clone(), *i))
            .collect();
        assert_eq!(twins, [("c".to_string(), 0), ("e".to_string(), 1)]);
    }

    #[test]
    fn settling_a_batch_answers_twins_like_the_conversation_they_copy() {
        use crate::analyze::FailureKind;
        // run: a analysed, b failed, c cancelled; d, e, f their twins; g answered.
        let plan = Plan {
            skipped: vec![(loaded("g"), [9; 32], analysis("known"))],
            run: vec![
                (loaded("a"), [1; 32]),
                (loaded("b"), [2; 32]),
                (loaded("c"), [3; 32]),
            ],
            twins: vec![(loaded("d"), 0), (loaded("e"), 1), (loaded("f"), 2)],
        };
        let paid = LlmUsage {
            requests: 1,
            ..LlmUsage::default()
        };
        let outcomes = vec![
            Outcome {
                result: Ok(analysis("fresh")),
                usage: paid,
                endpoint: None,
            },
            Outcome {
                result: Err(AnalyzeError::Failed {
                    kind: FailureKind::Refused,
                    detail: "no".into(),
                }),
                usage: paid,
                endpoint: None,
            },
            Outcome::local(Err(AnalyzeError::Cancelled)),
        ];
        let mut tally = Tally::default();
        let (settled, analyses, fatal) = settle_free(plan, outcomes, &mut tally);
        assert!(fatal.is_none());
        assert_eq!(tally.llm.requests, 2);
        assert_eq!(analyses.len(), 1);
        assert_eq!(analyses.get(&[1; 32]), Some(&analysis("fresh")));
        let got: Vec<(&str, String)> = settled
            .iter()
            .map(|(c, s)| {
                let what = match s {
                    Settled::Analyzed {
                        analysis, usage, ..
                    } => format!("analysed {} {}", analysis.summary, usage.requests),
                    Settled::Skipped { analysis, key } => {
                        format!("answered {} {}", analysis.summary, key[0])
                    }
                    Settled::Failed {
                        kind,
                        reason,
                        usage,
                        ..
                    } => format!("failed {kind:?} {reason} {}", usage.requests),
                };
                (c.conversation.id.as_str(), what)
            })
            .collect();
        let want = [
            ("g", "answered known 9"),
            ("a", "analysed fresh 1"),
            ("b", "failed Refused no 1"),
            // Twins pay nothing; a cancelled call's twin waits for a resume.
            ("d", "answered fresh 1"),
            ("e", "failed Refused no 0"),
        ];
        assert_eq!(got, want.map(|(id, what)| (id, what.to_string())));
    }

    #[test]
    fn recent_forgets_a_batch_once_the_index_is_sure_to_show_it() {
        let mut recent = Recent::default();
        recent.push(ByKey::from_iter([([4; 32], analysis("older"))]));
        for _ in 1..RECENT_BATCHES {
            recent.push(ByKey::default());
            assert_eq!(recent.get(&[4; 32]), Some(&analysis("older")));
        }
        recent.push(ByKey::default());
        assert_eq!(recent.get(&[4; 32]), None);
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

    #[test]
    fn the_latest_analyses_are_remembered_however_many_came_before() {
        let mut t = Twins::default();
        let key = |i: usize| {
            let mut k = [0; 32];
            k[..8].copy_from_slice(&(i as u64).to_le_bytes());
            k
        };
        let n = RECENT_ANALYSES * 2 + 7;
        for i in 0..n {
            assert_eq!(t.need(loaded("x"), key(i), None).0, Need::Call);
            t.settle(&key(i), Some(&analysis("done")));
            // Every one of the last RECENT_ANALYSES is answered from memory.
            for back in [0, i.min(1), i.min(RECENT_ANALYSES - 1)] {
                assert_eq!(
                    t.need(loaded("twin"), key(i - back), None).0,
                    Need::Answered(analysis("done")),
                    "{back} after the {i}th"
                );
            }
        }
    }
}
