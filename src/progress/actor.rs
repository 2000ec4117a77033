//! `ProgressActor`: the registry of uploads in this process, their live
//! state and their cancellation tokens.

use std::collections::HashMap;

use actix::prelude::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{ProgressEvent, ProgressSnapshot, UploadProgress};
use crate::model::Stage;

/// Finished uploads kept in memory for progress queries; older ones are
/// dropped (their results stay in the store).
const MAX_FINISHED: usize = 1000;

/// Starts tracking an upload (again, for a resumed one); answers the token
/// that cancels it, a child of `parent` (the engine's shutdown token).
#[derive(Message)]
#[rtype(result = "CancellationToken")]
pub struct Register {
    pub upload_id: Uuid,
    pub filename: String,
    pub parent: CancellationToken,
}

/// Things happened to an upload (a batch's worth: one message, one
/// snapshot published).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Update {
    pub upload_id: Uuid,
    pub events: Vec<ProgressEvent>,
}

/// Asks an upload to stop: no new analyzer calls, in-flight ones aborted.
#[derive(Message)]
#[rtype(result = "Result<(), CancelError>")]
pub struct Cancel {
    pub upload_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CancelError {
    #[error("upload {0} is not running in this process")]
    NotFound(Uuid),
    #[error("upload {upload_id} has already finished ({})", stage.as_str())]
    AlreadyFinished { upload_id: Uuid, stage: Stage },
}

/// The current state of one upload.
#[derive(Message)]
#[rtype(result = "Option<ProgressSnapshot>")]
pub struct GetProgress {
    pub upload_id: Uuid,
}

/// All tracked uploads, or only those still running.
#[derive(Message)]
#[rtype(result = "Vec<ProgressSnapshot>")]
pub struct ListProgress {
    pub include_finished: bool,
}

/// A receiver that sees every change of one upload's state.
#[derive(Message)]
#[rtype(result = "Option<watch::Receiver<ProgressSnapshot>>")]
pub struct Subscribe {
    pub upload_id: Uuid,
}

struct Entry {
    progress: UploadProgress,
    publisher: watch::Sender<ProgressSnapshot>,
    cancel: CancellationToken,
    /// Order in which uploads finished, for eviction.
    finished_seq: Option<u64>,
}

#[derive(Default)]
pub struct ProgressActor {
    uploads: HashMap<Uuid, Entry>,
    finished: u64,
}

impl ProgressActor {
    fn evict_old_finished(&mut self) {
        let finished = self
            .uploads
            .values()
            .filter(|e| e.finished_seq.is_some())
            .count();
        if finished <= MAX_FINISHED {
            return;
        }
        let mut by_age: Vec<(u64, Uuid)> = self
            .uploads
            .iter()
            .filter_map(|(id, e)| e.finished_seq.map(|s| (s, *id)))
            .collect();
        by_age.sort_unstable();
        for (_, id) in by_age.into_iter().take(finished - MAX_FINISHED) {
            self.uploads.remove(&id);
        }
    }
}

impl Actor for ProgressActor {
    type Context = Context<Self>;
}

impl Handler<Register> for ProgressActor {
    type Result = MessageResult<Register>;
    fn handle(&mut self, msg: Register, _: &mut Self::Context) -> Self::Result {
        let progress = UploadProgress::new(msg.upload_id, msg.filename);
        let (publisher, _) = watch::channel(progress.snapshot().clone());
        let cancel = msg.parent.child_token();
        self.uploads.insert(
            msg.upload_id,
            Entry {
                progress,
                publisher,
                cancel: cancel.clone(),
                finished_seq: None,
            },
        );
        MessageResult(cancel)
    }
}

impl Handler<Update> for ProgressActor {
    type Result = ();
    fn handle(&mut self, msg: Update, _: &mut Self::Context) {
        let Some(entry) = self.uploads.get_mut(&msg.upload_id) else {
            return;
        };
        for event in msg.events {
            entry.progress.apply(event);
        }
        entry
            .publisher
            .send_replace(entry.progress.snapshot().clone());
        if entry.finished_seq.is_none() && entry.progress.stage().is_final() {
            self.finished += 1;
            entry.finished_seq = Some(self.finished);
            self.evict_old_finished();
        }
    }
}

impl Handler<Cancel> for ProgressActor {
    type Result = Result<(), CancelError>;
    fn handle(&mut self, msg: Cancel, _: &mut Self::Context) -> Self::Result {
        let entry = self
            .uploads
            .get(&msg.upload_id)
            .ok_or(CancelError::NotFound(msg.upload_id))?;
        let stage = entry.progress.stage();
        if stage.is_final() {
            return Err(CancelError::AlreadyFinished {
                upload_id: msg.upload_id,
                stage,
            });
        }
        tracing::info!(upload_id = %msg.upload_id, "cancel requested");
        entry.cancel.cancel();
        Ok(())
    }
}

impl Handler<GetProgress> for ProgressActor {
    type Result = Option<ProgressSnapshot>;
    fn handle(&mut self, msg: GetProgress, _: &mut Self::Context) -> Self::Result {
        self.uploads
            .get(&msg.upload_id)
            .map(|e| e.progress.snapshot().clone())
    }
}

impl Handler<ListProgress> for ProgressActor {
    type Result = Vec<ProgressSnapshot>;
    fn handle(&mut self, msg: ListProgress, _: &mut Self::Context) -> Self::Result {
        let mut all: Vec<ProgressSnapshot> = self
            .uploads
            .values()
            .filter(|e| msg.include_finished || !e.progress.stage().is_final())
            .map(|e| e.progress.snapshot().clone())
            .collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.started_at));
        all
    }
}

impl Handler<Subscribe> for ProgressActor {
    type Result = Option<watch::Receiver<ProgressSnapshot>>;
    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) -> Self::Result {
        self.uploads
            .get(&msg.upload_id)
            .map(|e| e.publisher.subscribe())
    }
}
