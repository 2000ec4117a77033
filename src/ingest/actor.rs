//! `UploadActor`: accepts uploads, runs each as a pipeline job, and knows
//! which jobs are still running so shutdown can drain them.

use std::collections::HashMap;

use actix::prelude::*;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::pipeline::{Pipeline, Submission, UploadError, UploadReport};
use crate::progress::ProgressSnapshot;
use crate::progress::actor::{Register, Subscribe};

/// Start analysing a file. Answers at once with a ticket; the work goes on
/// in the background.
#[derive(Message)]
#[rtype(result = "Result<UploadTicket, UploadError>")]
pub struct StartUpload(pub Submission);

/// Stop taking uploads, cancel the running ones and answer once each has
/// written its final record.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Sent by a job to its actor when it ends.
#[derive(Message)]
#[rtype(result = "()")]
struct JobEnded(Uuid);

/// What a caller gets for a started upload.
#[derive(Debug)]
pub struct UploadTicket {
    pub upload_id: Uuid,
    /// Every change of the upload's progress.
    pub progress: watch::Receiver<ProgressSnapshot>,
    /// The final report (or why the upload failed); may be dropped.
    pub done: oneshot::Receiver<Result<UploadReport, UploadError>>,
}

pub struct UploadActor {
    pipeline: Pipeline,
    running: HashMap<Uuid, CancellationToken>,
    draining: bool,
    /// Answered when the last running job ends during a drain.
    drained: Vec<oneshot::Sender<()>>,
}

impl UploadActor {
    pub fn new(pipeline: Pipeline) -> Self {
        Self {
            pipeline,
            running: HashMap::new(),
            draining: false,
            drained: Vec::new(),
        }
    }
}

impl Actor for UploadActor {
    type Context = Context<Self>;
}

impl Handler<StartUpload> for UploadActor {
    type Result = ResponseActFuture<Self, Result<UploadTicket, UploadError>>;

    fn handle(&mut self, msg: StartUpload, ctx: &mut Self::Context) -> Self::Result {
        if self.draining {
            return Box::pin(actix::fut::ready(Err(UploadError::ShuttingDown)));
        }
        let upload_id = Uuid::new_v4();
        let progress = self.pipeline.progress.clone();
        let filename = msg.0.filename.clone();
        let me = ctx.address();
        let setup = async move {
            let cancel = progress
                .send(Register {
                    upload_id,
                    filename,
                })
                .await?;
            let receiver = progress
                .send(Subscribe { upload_id })
                .await?
                .ok_or(UploadError::ShuttingDown)?;
            Ok::<_, UploadError>((cancel, receiver))
        };
        Box::pin(setup.into_actor(self).map(move |setup, act, _| {
            let (cancel, receiver) = setup?;
            act.running.insert(upload_id, cancel.clone());
            let (done_tx, done_rx) = oneshot::channel();
            let job = act.pipeline.clone().run(upload_id, msg.0, cancel);
            actix::spawn(async move {
                let result = job.await;
                let _ = done_tx.send(result);
                me.do_send(JobEnded(upload_id));
            });
            Ok(UploadTicket {
                upload_id,
                progress: receiver,
                done: done_rx,
            })
        }))
    }
}

impl Handler<JobEnded> for UploadActor {
    type Result = ();
    fn handle(&mut self, msg: JobEnded, _: &mut Self::Context) {
        self.running.remove(&msg.0);
        if self.running.is_empty() {
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Handler<Drain> for UploadActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        self.draining = true;
        if self.running.is_empty() {
            return Box::pin(async {});
        }
        tracing::info!(uploads = self.running.len(), "cancelling running uploads");
        for token in self.running.values() {
            token.cancel();
        }
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
