//! The AnalyzerActor pool: `analyzer.concurrency` actors, each analysing one
//! conversation at a time, spread over a few arbiter threads.
//!
//! [`AnalyzerPool`] hands each call to an idle actor, so a finished call is
//! replaced at once and the number of calls in flight never exceeds the pool
//! size, however many uploads run together.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::Semaphore;
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

    /// Analyses `conversation` on the next idle actor, waiting for one if all are busy.
    pub async fn analyze(&self, conversation: Conversation, cancel: CancellationToken) -> Outcome {
        let cancelled = || Outcome {
            result: Err(AnalyzeError::Cancelled),
            usage: LlmUsage::default(),
        };
        let permit = tokio::select! {
            permit = self.permits.acquire() => match permit {
                Ok(p) => p,
                Err(_) => return cancelled(),
            },
            _ = cancel.cancelled() => return cancelled(),
        };
        let index = self.take_idle();
        let outcome = self.actors[index]
            .send(Analyze {
                conversation,
                cancel,
            })
            .await;
        self.return_idle(index);
        drop(permit);
        outcome.unwrap_or_else(|_| Outcome {
            result: Err(AnalyzeError::Fatal("analyzer pool is shutting down".into())),
            usage: LlmUsage::default(),
        })
    }

    fn take_idle(&self) -> usize {
        // A permit guarantees an idle index exists.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .unwrap_or(0)
    }

    fn return_idle(&self, index: usize) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(index);
    }

    /// Stops the arbiters; in-flight calls end with the actors.
    pub fn stop(&self) {
        self.permits.close();
        for arbiter in self.arbiters.iter() {
            arbiter.stop();
        }
    }
}
