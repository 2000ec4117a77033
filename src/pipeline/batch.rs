//! Stage 2 in batch mode (`analyzer.openai.mode = "batch"`): the upload's
//! conversations without an outcome go to the Batch API as input files of
//! at most 50,000 requests, are polled until done and recorded from the
//! output file; what failed or expired goes in a follow-up round, and
//! after `batch_rounds` rounds sync calls take what is left.
//!
//! Each input file is a [`BatchJob`], stored (durably) before anything is
//! uploaded; the batch is created tagged with the job id. A run that finds
//! a job without a batch id looks the batch up by that tag before creating
//! one, so a kill, a shutdown or a restart never pays for a second batch:
//! `analyze --resume`, `serve` on start and the resume endpoint all come
//! back here and pick the same batch up. Results are recorded without
//! fsync (the output file can be read again), and the job's move to
//! `finished`, a durable commit, seals them.
//!
//! A user's cancel cancels the batches (`POST /batches/{id}/cancel`) and
//! records what finished; a shutdown leaves them running for the next start.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::budget::Budget;
use super::{AnalyzeStop, Pipeline, Settled, Tally};
use crate::analyze::openai::batch::{self, BatchError, BatchState, LineResult};
use crate::analyze::openai::reply::ReplyError;
use crate::analyze::{FatalKind, OpenAiAnalyzer};
use crate::progress::{BatchProgress, ProgressEvent};
use crate::store::actor::{BatchJobKeys, ListBatchJobs, PutBatchJob};
use crate::store::{BatchJob, JobState, LoadedConversation};

/// The longest wait between two polls of a batch.
const MAX_POLL: Duration = Duration::from_secs(60);

/// A conversation whose reply was invalid: its content and the problem, to
/// quote back in the follow-up round (as sync mode re-asks).
type Reasks = HashMap<[u8; 32], (String, ReplyError)>;

fn hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn stop(e: BatchError) -> AnalyzeStop {
    match e {
        BatchError::Fatal { kind, detail } => AnalyzeStop::Fatal { kind, detail },
        BatchError::Unavailable(detail) => AnalyzeStop::Fatal {
            kind: FatalKind::NotFound,
            detail: format!("the Batch API could not be reached: {detail}"),
        },
    }
}

/// What the jobs of a round add up to, for progress.
fn progress_of(round: u32, jobs: &[BatchJob]) -> BatchProgress {
    const ORDER: [&str; 9] = [
        "preparing",
        "validating",
        "in_progress",
        "finalizing",
        "cancelling",
        "completed",
        "expired",
        "cancelled",
        "failed",
    ];
    let rank = |s: &str| ORDER.iter().position(|o| *o == s).unwrap_or(0);
    BatchProgress {
        status: jobs
            .iter()
            .map(|j| {
                if j.status.is_empty() {
                    "preparing"
                } else {
                    j.status.as_str()
                }
            })
            .min_by_key(|s| rank(s))
            .unwrap_or("preparing")
            .to_string(),
        round,
        batch_ids: jobs.iter().filter_map(|j| j.batch_id.clone()).collect(),
        total: jobs.iter().map(|j| j.requests).sum(),
        completed: jobs.iter().map(|j| j.completed).sum(),
        failed: jobs.iter().map(|j| j.failed).sum(),
    }
}

impl Pipeline {
    /// Batch mode: rounds of batches until nothing is left to send or
    /// `batch_rounds` are spent (the caller's sync pass then takes the rest).
    pub(super) async fn analyse_batches(
        &self,
        llm: &OpenAiAnalyzer,
        upload_id: Uuid,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<(), AnalyzeStop> {
        let mut reasks = Reasks::new();
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let jobs = self.query(ListBatchJobs { upload_id }).await?;
            let last_round = jobs.iter().map(|j| j.round).max().unwrap_or(0);
            let mut active: Vec<BatchJob> = jobs
                .into_iter()
                .filter(|j| j.state != JobState::Finished)
                .collect();
            let round = if active.is_empty() {
                if last_round >= llm.batch_rounds() {
                    return Ok(());
                }
                let (jobs, files) = self
                    .prepare_round(llm, upload_id, last_round + 1, &reasks, tally)
                    .await?;
                if jobs.is_empty() {
                    return Ok(());
                }
                active = jobs;
                for (job, file) in active.iter_mut().zip(files) {
                    self.submit(llm, job, Some(file)).await?;
                }
                last_round + 1
            } else {
                for job in active.iter_mut() {
                    self.submit(llm, job, None).await?;
                }
                last_round
            };
            let states = self
                .wait(llm, upload_id, round, &mut active, cancel)
                .await?;
            reasks = self.record(llm, upload_id, &states, tally).await?;
            for mut job in active {
                job.state = JobState::Finished;
                self.put_job(job, None).await?;
            }
        }
    }

    async fn put_job(&self, job: BatchJob, keys: Option<Vec<[u8; 32]>>) -> Result<(), AnalyzeStop> {
        self.store
            .send(PutBatchJob { job, keys })
            .await
            .map_err(|_| AnalyzeStop::shutting_down())?
            .map_err(AnalyzeStop::Store)
    }

    /// The conversations without an outcome, page by page, with their keys
    /// and what the processed-content index holds for them.
    async fn each_pending(
        &self,
        upload_id: Uuid,
        mut visit: impl FnMut(LoadedConversation, [u8; 32], Option<crate::model::Analysis>),
    ) -> Result<(), AnalyzeStop> {
        let mut after = None;
        while let Some(batch) = self.next_batch(upload_id, after.take()).await? {
            after = Some(batch.next);
            let items = batch
                .conversations
                .into_iter()
                .zip(batch.keys)
                .zip(batch.cached);
            for ((conversation, key), cached) in items {
                visit(conversation, key, cached);
            }
        }
        Ok(())
    }

    /// A round's jobs, recorded before anything is uploaded, and their input
    /// files. Conversations the processed index answers are recorded here;
    /// identical content is sent once; the budget caps what is sent.
    async fn prepare_round(
        &self,
        llm: &OpenAiAnalyzer,
        upload_id: Uuid,
        round: u32,
        reasks: &Reasks,
        tally: &mut Tally,
    ) -> Result<(Vec<BatchJob>, Vec<Vec<u8>>), AnalyzeStop> {
        let mut answered = Vec::new();
        let mut seen = HashSet::new();
        let mut requests: Vec<(String, String)> = Vec::new();
        let mut keys: Vec<[u8; 32]> = Vec::new();
        let mut worst = 0.0;
        let budget = llm.budget_usd().map(|b| b - tally.llm.cost_usd);
        let mut over_budget = false;
        self.each_pending(upload_id, |conversation, key, cached| {
            if let Some(analysis) = cached {
                answered.push((conversation, Settled::Skipped { analysis, key }));
                return;
            }
            if !seen.insert(key) {
                return;
            }
            // The Batch API bills half: so does the budget.
            let most = llm.worst_case_cost(&conversation.conversation)
                * crate::analyze::openai::models::BATCH_PRICE_FACTOR;
            if budget.is_some_and(|b| worst + most > b) {
                over_budget = true;
                return;
            }
            worst += most;
            let mut request = llm.request(&conversation.conversation);
            if let Some((content, problem)) = reasks.get(&key) {
                request = llm.reask(&request, content, problem);
            }
            requests.push((hex(&key), request.body));
            keys.push(key);
        })
        .await?;
        if !answered.is_empty() {
            let saving = self.save_batch(upload_id, tally, answered);
            self.saved(saving).await?;
        }
        if requests.is_empty() && over_budget {
            return Err(Budget::new(llm.budget_usd(), tally.llm.cost_usd).exhausted(0.0));
        }
        let files = batch::input_files(&requests);
        let mut jobs = Vec::with_capacity(files.len());
        let mut start = 0;
        for file in &files {
            let lines = file.iter().filter(|b| **b == b'\n').count();
            let job = BatchJob {
                job_id: Uuid::new_v4().to_string(),
                upload_id,
                round,
                state: JobState::Preparing,
                input_file_id: None,
                batch_id: None,
                status: String::new(),
                requests: lines as u64,
                completed: 0,
                failed: 0,
                created_at_ms: now_ms(),
            };
            self.put_job(job.clone(), Some(keys[start..start + lines].to_vec()))
                .await?;
            start += lines;
            jobs.push(job);
        }
        if over_budget {
            tracing::info!(%upload_id, "batch round capped by analyzer.openai.max_cost_usd");
        }
        Ok((jobs, files))
    }

    /// Makes sure a job has its batch: found by its tag, or uploaded and
    /// created (its file rebuilt from the stored keys after a restart).
    async fn submit(
        &self,
        llm: &OpenAiAnalyzer,
        job: &mut BatchJob,
        file: Option<Vec<u8>>,
    ) -> Result<(), AnalyzeStop> {
        if job.batch_id.is_some() {
            return Ok(());
        }
        if let Some(found) = llm.find_batch(&job.job_id).await.map_err(stop)? {
            tracing::info!(batch = %found.id, job = %job.job_id, "found the batch of an interrupted run");
            job.batch_id = Some(found.id.clone());
            job.status = found.status;
            job.state = JobState::Submitted;
            return self.put_job(job.clone(), None).await;
        }
        let file = match file {
            Some(f) => f,
            None => self.rebuild(llm, job).await?,
        };
        if file.is_empty() {
            // Everything it held was answered meanwhile.
            job.state = JobState::Finished;
            return self.put_job(job.clone(), None).await;
        }
        let name = format!("powerpulse-{}.jsonl", job.job_id);
        let file_id = llm.upload_batch_file(&name, file).await.map_err(stop)?;
        job.input_file_id = Some(file_id.clone());
        self.put_job(job.clone(), None).await?;
        let created = llm
            .create_batch(&file_id, &job.job_id)
            .await
            .map_err(stop)?;
        tracing::info!(batch = %created.id, requests = job.requests, "batch created");
        job.batch_id = Some(created.id);
        job.status = created.status;
        job.state = JobState::Submitted;
        self.put_job(job.clone(), None).await
    }

    /// A job's input file again, from its stored keys and the conversations
    /// still without an outcome.
    async fn rebuild(&self, llm: &OpenAiAnalyzer, job: &BatchJob) -> Result<Vec<u8>, AnalyzeStop> {
        let keys: HashSet<[u8; 32]> = self
            .query(BatchJobKeys {
                upload_id: job.upload_id,
                job_id: job.job_id.clone(),
            })
            .await?
            .into_iter()
            .collect();
        let mut requests = Vec::new();
        let mut seen = HashSet::new();
        self.each_pending(job.upload_id, |conversation, key, _| {
            if keys.contains(&key) && seen.insert(key) {
                let request = llm.request(&conversation.conversation);
                requests.push((hex(&key), request.body));
            }
        })
        .await?;
        Ok(batch::input_files(&requests)
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Polls the round's batches until each is final; a user's cancel
    /// cancels them (what finished is kept), a shutdown leaves them running.
    async fn wait(
        &self,
        llm: &OpenAiAnalyzer,
        upload_id: Uuid,
        round: u32,
        jobs: &mut [BatchJob],
        cancel: &CancellationToken,
    ) -> Result<Vec<BatchState>, AnalyzeStop> {
        let mut interval = llm.batch_poll();
        let mut cancelled = false;
        let mut states: Vec<Option<BatchState>> = vec![None; jobs.len()];
        loop {
            if self.shutdown.is_cancelled() {
                return Err(AnalyzeStop::shutting_down());
            }
            if cancel.is_cancelled() && !cancelled {
                cancelled = true;
                for (job, state) in jobs.iter().zip(&states) {
                    if state.as_ref().is_some_and(BatchState::is_final) {
                        continue;
                    }
                    if let Some(id) = &job.batch_id
                        && let Err(e) = llm.cancel_batch(id).await
                    {
                        tracing::warn!(batch = %id, error = %e, "could not cancel the batch");
                    }
                }
            }
            for (job, state) in jobs.iter_mut().zip(states.iter_mut()) {
                if state.as_ref().is_some_and(BatchState::is_final) {
                    continue;
                }
                let Some(id) = job.batch_id.clone() else {
                    continue;
                };
                match llm.batch(&id).await {
                    Ok(now) => {
                        let changed = now.status != job.status
                            || now.request_counts.completed != job.completed
                            || now.request_counts.failed != job.failed;
                        job.status = now.status.clone();
                        job.requests = job.requests.max(now.request_counts.total);
                        job.completed = now.request_counts.completed;
                        job.failed = now.request_counts.failed;
                        if changed {
                            self.put_job(job.clone(), None).await?;
                        }
                        *state = Some(now);
                    }
                    Err(BatchError::Unavailable(e)) => {
                        tracing::warn!(batch = %id, error = %e, "polling the batch failed; trying again");
                    }
                    Err(e) => return Err(stop(e)),
                }
            }
            self.progress(upload_id, ProgressEvent::Batch(progress_of(round, jobs)));
            if states
                .iter()
                .all(|s| s.as_ref().is_some_and(BatchState::is_final))
            {
                return Ok(states.into_iter().flatten().collect());
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = cancel.cancelled(), if !cancelled => {}
            }
            interval = interval.mul_f64(1.5).min(MAX_POLL.max(llm.batch_poll()));
        }
    }

    /// Reads the round's output and error files and records every
    /// conversation they answer; answers the invalid replies to re-ask.
    async fn record(
        &self,
        llm: &OpenAiAnalyzer,
        upload_id: Uuid,
        states: &[BatchState],
        tally: &mut Tally,
    ) -> Result<Reasks, AnalyzeStop> {
        let mut results: HashMap<String, LineResult> = HashMap::new();
        for state in states {
            if state.status == "failed" {
                tracing::warn!(batch = %state.id, errors = ?state.errors, "the batch failed");
            }
            for file in [&state.error_file_id, &state.output_file_id]
                .into_iter()
                .flatten()
            {
                let bytes = llm.batch_file(file).await.map_err(stop)?;
                let (lines, unreadable) = llm.read_results(&bytes);
                if unreadable > 0 {
                    tracing::warn!(batch = %state.id, unreadable, "unreadable result lines");
                }
                // Output after errors: an answer wins over an error line.
                results.extend(lines);
            }
        }
        let mut settled = Vec::new();
        let mut reasks = Reasks::new();
        let mut paid: HashSet<[u8; 32]> = HashSet::new();
        self.each_pending(upload_id, |conversation, key, _| {
            let id = hex(&key);
            match results.get(&id) {
                Some(LineResult::Analysed(analysis, usage)) => {
                    let s = if paid.insert(key) {
                        tally.llm.add(usage);
                        Settled::Analyzed {
                            analysis: analysis.clone(),
                            key,
                            usage: *usage,
                        }
                    } else {
                        Settled::Skipped {
                            analysis: analysis.clone(),
                            key,
                        }
                    };
                    settled.push((conversation, s));
                }
                Some(LineResult::Invalid {
                    problem,
                    content,
                    usage,
                }) if paid.insert(key) => {
                    // Billed, but no outcome yet: counted now.
                    tally.llm.add(usage);
                    if let Some(c) = content {
                        reasks.insert(key, (c.clone(), problem.clone()));
                    }
                }
                Some(LineResult::Invalid { .. }) => {}
                Some(LineResult::Failed { reason, .. }) => {
                    tracing::debug!(%reason, "batch line failed; asked again");
                }
                None => {}
            }
        })
        .await?;
        while !settled.is_empty() {
            let rest = settled.split_off(settled.len().min(self.batch_size.max(1)));
            let chunk = std::mem::replace(&mut settled, rest);
            let saving = self.save_batch(upload_id, tally, chunk);
            self.saved(saving).await?;
        }
        Ok(reasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: &str, batch: Option<&str>, counts: (u64, u64, u64)) -> BatchJob {
        BatchJob {
            job_id: "j".into(),
            upload_id: Uuid::nil(),
            round: 1,
            state: JobState::Submitted,
            input_file_id: None,
            batch_id: batch.map(str::to_string),
            status: status.into(),
            requests: counts.0,
            completed: counts.1,
            failed: counts.2,
            created_at_ms: 0,
        }
    }

    #[test]
    fn progress_sums_the_round_and_shows_the_least_advanced_status() {
        let p = progress_of(
            2,
            &[
                job("completed", Some("b1"), (10, 9, 1)),
                job("in_progress", Some("b2"), (5, 2, 0)),
                job("", None, (3, 0, 0)),
            ],
        );
        assert_eq!(p.status, "preparing");
        assert_eq!(p.round, 2);
        assert_eq!(p.batch_ids, vec!["b1", "b2"]);
        assert_eq!((p.total, p.completed, p.failed), (18, 11, 1));
        let p = progress_of(
            1,
            &[
                job("completed", Some("b1"), (1, 1, 0)),
                job("finalizing", Some("b2"), (1, 1, 0)),
            ],
        );
        assert_eq!(p.status, "finalizing");
        assert_eq!(hex(&[0xab; 32]).len(), 64);
    }
}
