//! `UploadActor`: accepts uploads, runs each as a pipeline job, and knows
//! which jobs are still running so shutdown can drain them.

use std::collections::HashMap;

use actix::prelude::*;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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
            let (cancel, receiver) = setup?;
            act.running.insert(upload_id, cancel.clone());
            let (done_tx, done_rx) = oneshot::channel();
            let pipeline = act.pipeline.clone();
            actix::spawn(async move {
                let result = match launch {
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
                };
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
        let reader = self.pipeline.reader.clone();
        let lookup = async move { reader.send(GetUpload { upload_id }).await };
        Box::pin(lookup.into_actor(self).then(move |found, act, ctx| {
            let record = match found.map_err(UploadError::from).and_then(|r| Ok(r?)) {
                Ok(Some(record)) => record,
                Ok(None) => return refuse(UploadError::NotFound(upload_id)),
                Err(e) => return refuse(e),
            };
            if record.status == Stage::Completed {
                return refuse(UploadError::AlreadyCompleted(upload_id));
            }
            // Checked again: another resume may have started while we looked.
            if act.running.contains_key(&upload_id) {
                return refuse(UploadError::AlreadyRunning(upload_id));
            }
            let filename = record.filename.clone();
            act.launch(upload_id, filename, Launch::Resume(Box::new(record)), ctx)
        }))
    }
}

fn refuse(e: UploadError) -> ResponseActFuture<UploadActor, Result<UploadTicket, UploadError>> {
    Box::pin(actix::fut::ready(Err(e)))
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
