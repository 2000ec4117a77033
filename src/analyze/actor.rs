//! The AnalyzerActor pool: `analyzer.concurrency` actors, each analysing one
//! conversation at a time, spread over a few arbiter threads.
//!
//! [`AnalyzerPool`] leases an idle actor for each call, so a finished call is
//! replaced at once and the number of calls in flight never exceeds the pool
//! size, however many uploads run together.
//!
//! A call that panics is caught inside its actor: the conversation is
//! recorded as failed with the panic's message and the actor takes the next
//! call, so one bad conversation (or one bad reply) never poisons the pool.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;
use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{AnalyzeError, Analyzer, FailureKind, FatalKind, Outcome};
use crate::facets::Facets;
use crate::model::Conversation;

/// What an actor does with one conversation: the analyzer's `analyze`.
/// Conversations are shared, not copied: the pipeline keeps them to record.
pub type Work = Arc<
    dyn Fn(Arc<Conversation>, CancellationToken) -> Pin<Box<dyn Future<Output = Outcome>>>
        + Send
        + Sync,
>;

/// The work of an [`Analyzer`].
fn analyzer_work(analyzer: Analyzer) -> Work {
    Arc::new(move |conversation, cancel| {
        let analyzer = analyzer.clone();
        Box::pin(async move { analyzer.analyze(&conversation, &cancel).await })
    })
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Analyse one conversation; the reply is its outcome.
#[derive(Message)]
#[rtype(result = "Outcome")]
pub struct Analyze {
    pub conversation: Arc<Conversation>,
    /// The upload's token: checked before the call and raced against it.
    pub cancel: CancellationToken,
}

/// Work on a shared batch until nothing is left in it (a free analyzer's
/// batch, worked on by one actor per thread); the reply is what this actor
/// did, by index.
#[derive(Message)]
#[rtype(result = "Taken")]
pub struct AnalyzeAll {
    pub batch: Arc<SharedBatch>,
    pub cancel: CancellationToken,
}

/// A free analyzer's batch, which the pool's threads take from one
/// conversation at a time: first the conversations to analyse, then those
/// whose [`Facets`] are to be read (every conversation of the batch, also
/// those answered without analysis). A thread that gets less of the CPU
/// (the store and the reader run beside them) takes fewer, and no thread
/// waits idle for a slower one's share.
pub struct SharedBatch {
    analyse: Vec<Arc<Conversation>>,
    describe: Vec<Arc<Conversation>>,
    next: AtomicUsize,
}

/// One piece of a [`SharedBatch`].
enum Task {
    Analyse(usize, Arc<Conversation>),
    Describe(usize, Arc<Conversation>),
}

impl SharedBatch {
    pub fn new(analyse: Vec<Arc<Conversation>>, describe: Vec<Arc<Conversation>>) -> Self {
        Self {
            analyse,
            describe,
            next: AtomicUsize::new(0),
        }
    }

    /// The next piece nobody has taken.
    fn take(&self) -> Option<Task> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.analyse.get(i) {
            return Some(Task::Analyse(i, Arc::clone(c)));
        }
        let i = i - self.analyse.len();
        self.describe
            .get(i)
            .map(|c| Task::Describe(i, Arc::clone(c)))
    }
}

/// What one actor did of a [`SharedBatch`], by index in its lists.
#[derive(Default)]
pub struct Taken {
    pub outcomes: Vec<(usize, Outcome)>,
    pub facets: Vec<(usize, Facets)>,
}

/// The outcome of a call the pool could not take: it is stopping.
fn shutting_down() -> Outcome {
    Outcome::local(Err(AnalyzeError::fatal(
        FatalKind::ShuttingDown,
        "the analyzer pool is shutting down",
    )))
}

/// A conversation's facets, a panic in reading them caught (and logged):
/// the conversation is then recorded without agent and language.
fn facets_of(conversation: &Conversation) -> Facets {
    std::panic::catch_unwind(AssertUnwindSafe(|| Facets::of(conversation))).unwrap_or_else(
        |panic| {
            let message = panic_message(panic.as_ref());
            tracing::error!(panic = %message, "reading a conversation's agent and language panicked");
            Facets::default()
        },
    )
}

pub struct AnalyzerActor {
    work: Work,
}

/// One call of `work`, a panic in it caught and turned into a failed outcome.
async fn guarded(
    work: Work,
    conversation: Arc<Conversation>,
    cancel: CancellationToken,
) -> Outcome {
    let call = work(conversation, cancel);
    AssertUnwindSafe(call).catch_unwind().await.unwrap_or_else(|panic| {
        let message = panic_message(panic.as_ref());
        tracing::error!(panic = %message, "an analyzer call panicked; the conversation is recorded as failed");
        Outcome::local(Err(AnalyzeError::failed(
            FailureKind::Internal,
            format!("internal error while analysing: {message}"),
        )))
    })
}

impl Actor for AnalyzerActor {
    type Context = Context<Self>;
}

impl Handler<Analyze> for AnalyzerActor {
    // Atomic: the actor takes its next message only when this call is done,
    // so one actor is exactly one call in flight.
    type Result = AtomicResponse<Self, Outcome>;

    fn handle(&mut self, msg: Analyze, _: &mut Self::Context) -> Self::Result {
        let call = guarded(self.work.clone(), msg.conversation, msg.cancel);
        AtomicResponse::new(Box::pin(call.into_actor(self)))
    }
}

impl Handler<AnalyzeAll> for AnalyzerActor {
    type Result = AtomicResponse<Self, Taken>;

    fn handle(&mut self, msg: AnalyzeAll, _: &mut Self::Context) -> Self::Result {
        let work = self.work.clone();
        let all = async move {
            let mut taken = Taken::default();
            while let Some(task) = msg.batch.take() {
                match task {
                    Task::Analyse(i, conversation) => {
                        let outcome = guarded(work.clone(), conversation, msg.cancel.clone());
                        taken.outcomes.push((i, outcome.await));
                    }
                    Task::Describe(i, conversation) => {
                        taken.facets.push((i, facets_of(&conversation)));
                    }
                }
            }
            taken
        };
        AtomicResponse::new(Box::pin(all.into_actor(self)))
    }
}

/// The pool of AnalyzerActors and the bookkeeping of which are idle.
#[derive(Clone)]
pub struct AnalyzerPool {
    actors: Arc<Vec<Addr<AnalyzerActor>>>,
    idle: Arc<Mutex<Vec<usize>>>,
    permits: Arc<Semaphore>,
    arbiters: Arc<Vec<ArbiterHandle>>,
}

impl AnalyzerPool {
    /// Starts `size` actors over `threads` arbiters (at least one). Lexicon
    /// analysis is CPU work, so more than one thread lets it use every core;
    /// LLM calls are I/O and need none.
    pub fn start(analyzer: Analyzer, size: usize, threads: usize) -> Self {
        Self::with_work(analyzer_work(analyzer), size, threads)
    }

    /// A pool whose actors do `work` (an analyzer's `analyze`, or a stand-in in tests).
    pub fn with_work(work: Work, size: usize, threads: usize) -> Self {
        let size = size.max(1);
        let arbiters: Vec<ArbiterHandle> = (0..threads.clamp(1, size))
            .map(|_| Arbiter::new().handle())
            .collect();
        let actors = (0..size)
            .map(|i| {
                let work = work.clone();
                AnalyzerActor::start_in_arbiter(&arbiters[i % arbiters.len()], move |_| {
                    AnalyzerActor { work }
                })
            })
            .collect();
        Self {
            actors: Arc::new(actors),
            idle: Arc::new(Mutex::new((0..size).rev().collect())),
            permits: Arc::new(Semaphore::new(size)),
            arbiters: Arc::new(arbiters),
        }
    }

    pub fn size(&self) -> usize {
        self.actors.len()
    }

    /// Works a free analyzer's batch: `analyse` analysed, and the facets of
    /// `describe` read. One actor on each arbiter thread takes from the
    /// batch until nothing is left, so every core works to the batch's end
    /// and the batch costs one message per thread. (Leases and the
    /// in-flight bound are for calls that cost money.) Both come back in
    /// order; a conversation no actor could take (the pool is gone) is
    /// failed, not lost, and its facets are read here.
    pub async fn analyze_all(
        &self,
        analyse: Vec<Arc<Conversation>>,
        describe: Vec<Arc<Conversation>>,
        cancel: CancellationToken,
    ) -> (Vec<Outcome>, Vec<Facets>) {
        let batch = Arc::new(SharedBatch::new(analyse, describe));
        let pieces = batch.analyse.len() + batch.describe.len();
        // Actor i lives on arbiter i (actors are spread round-robin).
        let calls = self
            .actors
            .iter()
            .take(self.arbiters.len().min(pieces))
            .map(|actor| {
                actor.send(AnalyzeAll {
                    batch: Arc::clone(&batch),
                    cancel: cancel.clone(),
                })
            });
        let mut outcomes: Vec<Option<Outcome>> = batch.analyse.iter().map(|_| None).collect();
        let mut facets: Vec<Option<Facets>> = batch.describe.iter().map(|_| None).collect();
        for taken in futures_util::future::join_all(calls).await {
            let taken = taken.unwrap_or_default();
            for (i, outcome) in taken.outcomes {
                outcomes[i] = Some(outcome);
            }
            for (i, f) in taken.facets {
                facets[i] = Some(f);
            }
        }
        let outcomes = outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(shutting_down))
            .collect();
        let facets = facets
            .into_iter()
            .zip(&batch.describe)
            .map(|(f, c)| f.unwrap_or_else(|| facets_of(c)))
            .collect();
        (outcomes, facets)
    }

    /// Waits for an idle actor and reserves it. `None` when `cancel` fires
    /// first or the pool is stopping.
    pub async fn lease(&self, cancel: &CancellationToken) -> Option<Lease> {
        let permit = tokio::select! {
            permit = self.permits.clone().acquire_owned() => permit.ok()?,
            _ = cancel.cancelled() => return None,
        };
        // A permit guarantees an idle index exists.
        let index = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()?;
        Some(Lease {
            pool: self.clone(),
            index,
            _permit: permit,
        })
    }

    /// Stops the arbiters; in-flight calls end with the actors.
    pub fn stop(&self) {
        self.permits.close();
        for arbiter in self.arbiters.iter() {
            arbiter.stop();
        }
    }
}

/// One reserved actor. Dropping the lease makes the actor available again:
/// for an analyzer that costs money the pipeline keeps the lease until the
/// outcome is committed, so a crash can repeat at most `concurrency` calls.
pub struct Lease {
    pool: AnalyzerPool,
    index: usize,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Analyses one conversation on the reserved actor.
    pub async fn analyze(
        &self,
        conversation: Arc<Conversation>,
        cancel: CancellationToken,
    ) -> Outcome {
        self.pool.actors[self.index]
            .send(Analyze {
                conversation,
                cancel,
            })
            .await
            .unwrap_or_else(|_| shutting_down())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Return the index before the permit (dropped after this body), so a
        // new permit holder always finds an index.
        self.pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Message, Role};

    fn conversation(id: &str) -> Conversation {
        Conversation {
            id: id.into(),
            messages: vec![Message {
                role: Role::Customer,
                text: "hello".into(),
                timestamp: None,
                time_ms: None,
                sender_name: None,
                autoresponse: false,
            }],
        }
    }

    /// Panics on conversations whose id starts with "boom", analyses the rest.
    fn fragile() -> Work {
        let lexicon = Analyzer::lexicon();
        Arc::new(move |conversation: Arc<Conversation>, cancel| {
            let lexicon = lexicon.clone();
            Box::pin(async move {
                if conversation.id.starts_with("boom") {
                    panic!("bad conversation {}", conversation.id);
                }
                lexicon.analyze(&conversation, &cancel).await
            })
        })
    }

    #[actix_rt::test]
    async fn a_panicking_call_fails_its_conversation_and_the_pool_lives_on() {
        let pool = AnalyzerPool::with_work(fragile(), 2, 1);
        let cancel = CancellationToken::new();
        for round in 0..3 {
            // Every actor of the pool meets a panic, then serves again.
            for i in 0..2 {
                let lease = pool.lease(&cancel).await.unwrap();
                let outcome = lease
                    .analyze(
                        Arc::new(conversation(&format!("boom-{round}-{i}"))),
                        cancel.clone(),
                    )
                    .await;
                match outcome.result {
                    Err(AnalyzeError::Failed {
                        kind,
                        detail: reason,
                    }) => {
                        assert_eq!(kind, FailureKind::Internal);
                        assert!(reason.contains("bad conversation boom"), "{reason}")
                    }
                    other => panic!("expected a failure, got {other:?}"),
                }
            }
            let lease = pool.lease(&cancel).await.unwrap();
            let outcome = lease
                .analyze(Arc::new(conversation("fine")), cancel.clone())
                .await;
            assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        }
        pool.stop();
    }

    /// Answers each conversation with its own id as the summary, noting the
    /// thread that took it. A conversation with id "slow-N" holds its thread
    /// until N others are done (or ten seconds pass): whatever the machine's
    /// load, they can only be done by another thread.
    fn echo(threads: Arc<Mutex<Vec<(String, std::thread::ThreadId)>>>) -> Work {
        let lexicon = Analyzer::lexicon();
        Arc::new(move |conversation: Arc<Conversation>, cancel| {
            let threads = Arc::clone(&threads);
            let lexicon = lexicon.clone();
            Box::pin(async move {
                if let Some(others) = conversation.id.strip_prefix("slow-") {
                    let others: usize = others.parse().unwrap();
                    let start = std::time::Instant::now();
                    while threads.lock().unwrap().len() < others
                        && start.elapsed() < std::time::Duration::from_secs(10)
                    {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                threads
                    .lock()
                    .unwrap()
                    .push((conversation.id.clone(), std::thread::current().id()));
                let mut outcome = lexicon.analyze(&conversation, &cancel).await;
                if let Ok(analysis) = &mut outcome.result {
                    analysis.summary = conversation.id.clone();
                }
                outcome
            })
        })
    }

    #[actix_rt::test]
    async fn a_batch_is_shared_by_every_thread_and_answered_in_order() {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let pool = AnalyzerPool::with_work(echo(Arc::clone(&threads)), 2, 2);
        // One thread is held up by the first conversation until the rest
        // are done: the other takes them all instead of half the batch.
        let ids: Vec<String> = std::iter::once("slow-39".to_string())
            .chain((1..40).map(|i| format!("c{i}")))
            .collect();
        let batch: Vec<_> = ids.iter().map(|id| Arc::new(conversation(id))).collect();
        let (outcomes, facets) = pool
            .analyze_all(batch.clone(), batch, CancellationToken::new())
            .await;
        assert_eq!(facets.len(), ids.len());
        let summaries: Vec<String> = outcomes
            .into_iter()
            .map(|o| o.result.unwrap().summary)
            .collect();
        assert_eq!(summaries, ids);
        let taken = threads.lock().unwrap().clone();
        let slow_thread = taken.iter().find(|(id, _)| id == "slow-39").unwrap().1;
        let by_the_other = taken.iter().filter(|(_, t)| *t != slow_thread).count();
        assert_eq!(
            by_the_other, 39,
            "the other thread took {by_the_other} of 39"
        );
        pool.stop();
    }

    #[actix_rt::test]
    async fn every_conversation_of_a_batch_gets_its_facets_in_order() {
        let pool = AnalyzerPool::with_work(echo(Arc::default()), 2, 2);
        let described: Vec<_> = (0..30)
            .map(|i| {
                let mut c = conversation(&format!("c{i}"));
                c.messages.push(Message {
                    role: Role::Agent,
                    text: "We are on it.".into(),
                    timestamp: None,
                    time_ms: None,
                    sender_name: Some(format!("agent {i}")),
                    autoresponse: false,
                });
                Arc::new(c)
            })
            .collect();
        // Only some are analysed (the others were answered from the index).
        let analysed = described.iter().step_by(3).cloned().collect();
        let (outcomes, facets) = pool
            .analyze_all(analysed, described.clone(), CancellationToken::new())
            .await;
        assert_eq!(outcomes.len(), 10);
        let agents: Vec<_> = facets.into_iter().map(|f| f.agent).collect();
        let expected: Vec<_> = (0..30).map(|i| Some(format!("agent {i}"))).collect();
        assert_eq!(agents, expected);
        pool.stop();
    }

    #[actix_rt::test]
    async fn a_batch_sent_to_a_stopped_pool_is_failed_not_lost() {
        let pool = AnalyzerPool::with_work(echo(Arc::default()), 2, 2);
        pool.stop();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let batch: Vec<_> = (0..5)
            .map(|i| Arc::new(conversation(&format!("c{i}"))))
            .collect();
        let (outcomes, facets) = pool
            .analyze_all(batch.clone(), batch, CancellationToken::new())
            .await;
        assert_eq!(facets.len(), 5, "read by the caller");
        assert_eq!(outcomes.len(), 5);
        for outcome in outcomes {
            assert!(
                matches!(
                    outcome.result,
                    Err(AnalyzeError::Fatal {
                        kind: FatalKind::ShuttingDown,
                        ..
                    })
                ),
                "{:?}",
                outcome.result
            );
        }
    }
}
