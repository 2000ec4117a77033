//! The AnalyzerActor pool: `analyzer.concurrency` actors, each analysing one
//! conversation at a time, spread over a few arbiter threads.
//!
//! [`AnalyzerPool`] leases an idle actor for each call, so a finished call is
//! replaced at once and the number of calls in flight never exceeds the pool
//! size, however many uploads run together.

use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{AnalyzeError, Analyzer, LlmUsage, Outcome};
use crate::model::Conversation;

/// Analyse one conversation; the reply is its outcome.
#[derive(Message)]
#[rtype(result = "Outcome")]
pub struct Analyze {
    pub conversation: Conversation,
    /// The upload's token: checked before the call and raced against it.
    pub cancel: CancellationToken,
}

pub struct AnalyzerActor {
    analyzer: Analyzer,
}

impl Actor for AnalyzerActor {
    type Context = Context<Self>;
}

impl Handler<Analyze> for AnalyzerActor {
    // Atomic: the actor takes its next message only when this call is done,
    // so one actor is exactly one call in flight.
    type Result = AtomicResponse<Self, Outcome>;

    fn handle(&mut self, msg: Analyze, _: &mut Self::Context) -> Self::Result {
        let analyzer = self.analyzer.clone();
        AtomicResponse::new(Box::pin(
            async move { analyzer.analyze(&msg.conversation, &msg.cancel).await }.into_actor(self),
        ))
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
        let size = size.max(1);
        let arbiters: Vec<ArbiterHandle> = (0..threads.clamp(1, size))
            .map(|_| Arbiter::new().handle())
            .collect();
        let actors = (0..size)
            .map(|i| {
                let analyzer = analyzer.clone();
                AnalyzerActor::start_in_arbiter(&arbiters[i % arbiters.len()], move |_| {
                    AnalyzerActor { analyzer }
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
