//! Packed requests (`conversations_per_request` = K > 1): conversations on
//! their way to the LLM wait here until K of them (or [`PACK_WAIT`]) make a
//! request, sent by a task of its own so no one conversation's cancel stops
//! the others'. The reply is an array keyed by each chat's position; a chat
//! it answers wrongly, twice or not at all is sent again alone. Results are
//! stored per conversation exactly as with K = 1.
//!
//! What a packed request cost is shared out evenly; its request (with its
//! retries and 429s) is counted on the first conversation of the pack, so
//! an upload's totals stay exact.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{OpenAiAnalyzer, Request, prompt, reply};
use crate::analyze::{AnalyzeError, LlmUsage, Outcome};

/// How long a conversation waits for others before a smaller pack leaves.
/// Short: with `concurrency` ≥ K, packs fill at once; this only matters at
/// an upload's tail.
pub const PACK_WAIT: Duration = Duration::from_millis(50);

/// What became of a conversation sent packed.
pub enum Packed {
    /// Its outcome, with its share of the request's cost.
    Done(Outcome),
    /// The packed reply had nothing valid for it: ask again alone (the usage
    /// is its share of the packed request, to add to its own).
    Alone(LlmUsage),
}

struct Waiting {
    id: u64,
    transcript: String,
    reply: oneshot::Sender<Packed>,
}

pub struct Packer {
    size: usize,
    next_id: AtomicU64,
    pending: Mutex<Vec<Waiting>>,
}

impl Packer {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            next_id: AtomicU64::new(0),
            pending: Mutex::new(Vec::new()),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a place in a pack and for the pack's answer.
    pub async fn submit(
        &self,
        analyzer: &OpenAiAnalyzer,
        transcript: String,
        cancel: &CancellationToken,
    ) -> Packed {
        let (tx, mut rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let full = {
            let mut pending = self.pending();
            pending.push(Waiting {
                id,
                transcript,
                reply: tx,
            });
            (pending.len() >= self.size).then(|| std::mem::take(&mut *pending))
        };
        if let Some(pack) = full {
            self.send(analyzer, pack);
        }
        let mut waited = false;
        loop {
            tokio::select! {
                answer = &mut rx => {
                    // The pack's task ended without a word for us (its
                    // runtime is stopping): try alone.
                    return answer.unwrap_or(Packed::Alone(LlmUsage::default()));
                }
                _ = tokio::time::sleep(PACK_WAIT), if !waited => {
                    waited = true;
                    let pack = {
                        let mut pending = self.pending();
                        pending
                            .iter()
                            .any(|w| w.id == id)
                            .then(|| std::mem::take(&mut *pending))
                    };
                    if let Some(pack) = pack {
                        self.send(analyzer, pack);
                    }
                }
                _ = cancel.cancelled() => {
                    self.pending().retain(|w| w.id != id);
                    return Packed::Done(Outcome::local(Err(AnalyzeError::Cancelled)));
                }
            }
        }
    }

    /// Sends `pack` from a task of its own and answers each member.
    fn send(&self, analyzer: &OpenAiAnalyzer, pack: Vec<Waiting>) {
        let user = prompt::packed_transcript(pack.iter().map(|w| w.transcript.as_str()));
        // A pack leaves with the packed shape whatever its size (a short
        // one at an upload's tail), as the estimates count it.
        let request = Request::new(user, self.size as u32);
        let analyzer = analyzer.clone();
        tokio::spawn(async move {
            let mut replies: Vec<oneshot::Sender<Packed>> =
                pack.into_iter().map(|w| w.reply).collect();
            let count = replies.len();
            let read = |model: &str, content: &str| {
                let topics = analyzer.topic_names();
                reply::validate_packed(content, count, OpenAiAnalyzer::NAME, model, topics)
            };
            // Only when every member has given up (cancelled) is the call
            // abandoned.
            let all_gone = async {
                for reply in replies.iter_mut() {
                    reply.closed().await;
                }
            };
            let never = CancellationToken::new();
            let called = tokio::select! {
                r = analyzer.call(request, &never, read) => r,
                _ = all_gone => return,
            };
            let (result, usage, endpoint) = (called.result, called.usage, called.endpoint);
            if let Ok(packed) = &result
                && packed.unknown > 0
            {
                tracing::debug!(unknown = packed.unknown, "packed reply named unknown refs");
            }
            let shares = usage.split(count);
            for (i, (reply, share)) in replies.into_iter().zip(shares).enumerate() {
                let answer = match &result {
                    Ok(packed) => match &packed.results[i] {
                        Ok(analysis) => Packed::Done(Outcome {
                            result: Ok(analysis.clone()),
                            usage: share,
                            endpoint: endpoint.clone(),
                        }),
                        Err(_) => Packed::Alone(share),
                    },
                    // The provider is unusable: every member stops the same way.
                    Err(e @ AnalyzeError::Fatal { .. }) => Packed::Done(Outcome {
                        result: Err(e.clone()),
                        usage: share,
                        endpoint: endpoint.clone(),
                    }),
                    Err(_) => Packed::Alone(share),
                };
                let _ = reply.send(answer);
            }
        });
    }
}
