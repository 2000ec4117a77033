//! `UploadActor`: accepts uploads, runs each as a pipeline job, and knows
//! which jobs are still running so shutdown can drain them.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;

use actix::prelude::*;
use futures_util::FutureExt;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::analyze::actor::panic_message;
use crate::ingest::RowReader;
use crate::model::Stage;
use crate::pipeline::{Pipeline, Submission, UploadError, UploadReport};
use crate::progress::ProgressSnapshot;
use crate::progress::actor::{Register, Subscribe};
use crate::store::UploadRecord;
use crate::store::actor::GetUpload;

/// Start analysing a file. Answers at once with a ticket; the work goes on
/// in the background.
#[derive(Message)]
#[rtype(result = "Result<UploadTicket, UploadError>")]
pub struct StartUpload(pub Submission);

/// Continue a stored upload that is not completed. Answers at once.
#[derive(Message)]
#[rtype(result = "Result<UploadTicket, UploadError>")]
pub struct ResumeUpload(pub Uuid);

/// Stop taking uploads and answer once every running job has ended (the
/// engine's shutdown token has already told them to stop).
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

/// What a job does once registered: run a new upload (already recorded by
/// `Pipeline::create`) or resume a stored one.
enum Launch {
    New {
        record: Box<UploadRecord>,
        reader: Box<RowReader>,
        remove_file_after: bool,
    },
    Resume(Box<UploadRecord>),
}

impl UploadActor {
    /// Registers the upload with the ProgressActor, then spawns its job.
    fn launch(
        &mut self,
        upload_id: Uuid,
        filename: String,
        launch: Launch,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<UploadTicket, UploadError>> {
        let progress = self.pipeline.progress.clone();
        let parent = self.pipeline.shutdown.clone();
        let me = ctx.address();
        let setup = async move {
            let cancel = progress
                .send(Register {
                    upload_id,
                    filename,
                    parent,
                })
                .await?;
            let receiver = progress
                .send(Subscribe { upload_id })
                .await?
                .ok_or(UploadError::ShuttingDown)?;
            Ok::<_, UploadError>((cancel, receiver))
        };
        Box::pin(setup.into_actor(self).map(move |setup, act, _| {
            let (cancel, receiver) = match setup {
                Ok(setup) => setup,
                Err(e) => {
                    act.release(upload_id);
                    return Err(e);
                }
            };
            act.running.insert(upload_id, cancel.clone());
            let (done_tx, done_rx) = oneshot::channel();
            let pipeline = act.pipeline.clone();
            actix::spawn(async move {
                // Whatever happens in the job, its end is reported: shutdown's
                // drain waits for every JobEnded.
                let _ended = JobEndedOnDrop { actor: me, upload_id };
                let job = {
                    let pipeline = pipeline.clone();
                    async move {
                        match launch {
                            Launch::New {
                                record,
                                reader,
                                remove_file_after,
                            } => {
                                pipeline
                                    .run(*record, *reader, remove_file_after, cancel)
                                    .await
                            }
                            Launch::Resume(record) => pipeline.resume(*record, cancel).await,
                        }
                    }
                };
                let result = match AssertUnwindSafe(job).catch_unwind().await {
                    Ok(result) => result,
                    Err(panic) => {
                        let message = panic_message(panic.as_ref());
                        tracing::error!(%upload_id, panic = %message, "an upload job panicked; the upload is marked failed");
                        Err(UploadError::Internal(message))
                    }
                };
                // A bug (a panic here or on the parser thread) is not worth
                // retrying on every start: the upload is failed, with why.
                if let Err(UploadError::Internal(message)) = &result {
                    pipeline.fail_after_panic(upload_id, message).await;
                }
                let _ = done_tx.send(result);
            });
            Ok(UploadTicket {
                upload_id,
                progress: receiver,
                done: done_rx,
            })
        }))
    }
}

impl Handler<StartUpload> for UploadActor {
    type Result = ResponseActFuture<Self, Result<UploadTicket, UploadError>>;

    fn handle(&mut self, msg: StartUpload, _: &mut Self::Context) -> Self::Result {
        if self.draining {
            return refuse(UploadError::ShuttingDown);
        }
        let submission = msg.0;
        let upload_id = Uuid::new_v4();
        let pipeline = self.pipeline.clone();
        let create = async move {
            let created = pipeline.create(upload_id, &submission).await;
            if created.is_err() && submission.remove_file_after {
                let _ = std::fs::remove_file(&submission.path);
            }
            created.map(|c| (c, submission))
        };
        Box::pin(create.into_actor(self).then(move |created, act, ctx| {
            let ((record, reader), submission) = match created {
                Ok(c) => c,
                Err(e) => return refuse(e),
            };
            let launch = Launch::New {
                record: Box::new(record),
                reader: Box::new(reader),
                remove_file_after: submission.remove_file_after,
            };
            act.launch(upload_id, submission.filename, launch, ctx)
        }))
    }
}

impl Handler<ResumeUpload> for UploadActor {
    type Result = ResponseActFuture<Self, Result<UploadTicket, UploadError>>;

    fn handle(&mut self, msg: ResumeUpload, _: &mut Self::Context) -> Self::Result {
        let upload_id = msg.0;
        if self.draining {
            return refuse(UploadError::ShuttingDown);
        }
        if self.running.contains_key(&upload_id) {
            return refuse(UploadError::AlreadyRunning(upload_id));
        }
        // Reserved before the first await: a second resume arriving while this
        // one looks the upload up is refused (single flight).
        self.running.insert(upload_id, CancellationToken::new());
        let reader = self.pipeline.reader.clone();
        let lookup = async move { reader.send(GetUpload { upload_id }).await };
        Box::pin(lookup.into_actor(self).then(move |found, act, ctx| {
            let record = match found.map_err(UploadError::from).and_then(|r| Ok(r?)) {
                Ok(Some(record)) if record.status == Stage::Completed => {
                    Err(UploadError::AlreadyCompleted(upload_id))
                }
                Ok(Some(record)) => Ok(record),
                Ok(None) => Err(UploadError::NotFound(upload_id)),
                Err(e) => Err(e),
            };
            match record {
                Ok(record) => {
                    let filename = record.filename.clone();
                    act.launch(upload_id, filename, Launch::Resume(Box::new(record)), ctx)
                }
                Err(e) => {
                    act.release(upload_id);
                    refuse(e)
                }
            }
        }))
    }
}

/// Tells the actor its job ended when dropped: on return, and on a panic
/// that escapes the job's own guard.
struct JobEndedOnDrop {
    actor: Addr<UploadActor>,
    upload_id: Uuid,
}

impl Drop for JobEndedOnDrop {
    fn drop(&mut self) {
        self.actor.do_send(JobEnded(self.upload_id));
    }
}

fn refuse(e: UploadError) -> ResponseActFuture<UploadActor, Result<UploadTicket, UploadError>> {
    Box::pin(actix::fut::ready(Err(e)))
}

impl UploadActor {
    /// Forgets a job (or a reservation) and answers a drain waiting for the last one.
    fn release(&mut self, upload_id: Uuid) {
        self.running.remove(&upload_id);
        if self.running.is_empty() {
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Handler<JobEnded> for UploadActor {
    type Result = ();
    fn handle(&mut self, msg: JobEnded, _: &mut Self::Context) {
        self.release(msg.0);
    }
}

impl Handler<Drain> for UploadActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        self.draining = true;
        if self.running.is_empty() {
            return Box::pin(async {});
        }
        tracing::info!(
            uploads = self.running.len(),
            "waiting for running uploads to stop"
        );
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
