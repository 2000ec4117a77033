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
use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;
use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{AnalyzeError, Analyzer, LlmUsage, Outcome};
use crate::model::Conversation;

/// What an actor does with one conversation: the analyzer's `analyze`.
pub type Work = Arc<
    dyn Fn(Conversation, CancellationToken) -> Pin<Box<dyn Future<Output = Outcome>>> + Send + Sync,
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
    pub conversation: Conversation,
    /// The upload's token: checked before the call and raced against it.
    pub cancel: CancellationToken,
}

pub struct AnalyzerActor {
    work: Work,
}

impl Actor for AnalyzerActor {
    type Context = Context<Self>;
}

impl Handler<Analyze> for AnalyzerActor {
    // Atomic: the actor takes its next message only when this call is done,
    // so one actor is exactly one call in flight.
    type Result = AtomicResponse<Self, Outcome>;

    fn handle(&mut self, msg: Analyze, _: &mut Self::Context) -> Self::Result {
        let call = (self.work)(msg.conversation, msg.cancel);
        let guarded = AssertUnwindSafe(call).catch_unwind().map(|caught| {
            caught.unwrap_or_else(|panic| {
                let message = panic_message(panic.as_ref());
                tracing::error!(panic = %message, "an analyzer call panicked; the conversation is recorded as failed");
                Outcome {
                    result: Err(AnalyzeError::Failed(format!(
                        "internal error while analysing: {message}"
                    ))),
                    usage: LlmUsage::default(),
                }
            })
        });
        AtomicResponse::new(Box::pin(guarded.into_actor(self)))
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
    pub async fn analyze(&self, conversation: Conversation, cancel: CancellationToken) -> Outcome {
        self.pool.actors[self.index]
            .send(Analyze {
                conversation,
                cancel,
            })
            .await
            .unwrap_or_else(|_| Outcome {
                result: Err(AnalyzeError::Fatal(
                    "the analyzer pool is shutting down".into(),
                )),
                usage: LlmUsage::default(),
            })
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
        Arc::new(move |conversation: Conversation, cancel| {
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
                    .analyze(conversation(&format!("boom-{round}-{i}")), cancel.clone())
                    .await;
                match outcome.result {
                    Err(AnalyzeError::Failed(reason)) => {
                        assert!(reason.contains("bad conversation boom"), "{reason}")
                    }
                    other => panic!("expected a failure, got {other:?}"),
                }
            }
            let lease = pool.lease(&cancel).await.unwrap();
            let outcome = lease.analyze(conversation("fine"), cancel.clone()).await;
            assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        }
        pool.stop();
    }
}
