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
use crate::analyze::openai::batch::{self, BatchError, BatchState, BatchStatus, LineResult};
use crate::analyze::openai::endpoint::Endpoint;
use crate::analyze::openai::reply::ReplyError;
use crate::analyze::{FatalKind, LlmUsage, OpenAiAnalyzer};
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

/// The content key a custom id names, if it names one.
fn unhex(id: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(id).ok()?;
    bytes.try_into().ok()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn stop(e: BatchError) -> AnalyzeStop {
    match e {
        BatchError::Fatal { kind, detail } => AnalyzeStop::Fatal { kind, detail },
        BatchError::Unavailable(detail) => AnalyzeStop::Fatal {
            kind: FatalKind::ProviderUnavailable,
            detail: format!(
                "the Batch API could not be reached: {detail}; resume the upload once it is back"
            ),
        },
    }
}

/// The endpoint holding `job`'s batch: the one it names (older jobs name
/// none: the primary). A job whose endpoint is no longer configured stops
/// the upload, resumable once it is back: its batch is paid for there.
fn endpoint_of<'a>(llm: &'a OpenAiAnalyzer, job: &BatchJob) -> Result<&'a Endpoint, AnalyzeStop> {
    match &job.endpoint {
        None => Ok(llm.primary()),
        Some(name) => llm.endpoint(name).ok_or_else(|| AnalyzeStop::Fatal {
            kind: FatalKind::NotFound,
            detail: format!(
                "batch job {} is held by endpoint {name:?}, which is no longer configured; \
                 configure it again and resume the upload",
                job.job_id
            ),
        }),
    }
}

/// What the jobs of a round add up to, for progress.
fn progress_of(round: u32, jobs: &[BatchJob]) -> BatchProgress {
    BatchProgress {
        // The least advanced batch's status.
        status: jobs
            .iter()
            .map(|j| j.status)
            .min()
            .unwrap_or(BatchStatus::Preparing),
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
            let states = states
                .into_iter()
                .zip(&active)
                .map(|(state, job)| Ok((state, endpoint_of(llm, job)?)))
                .collect::<Result<Vec<_>, AnalyzeStop>>()?;
            let unrecorded;
            (reasks, unrecorded) = self.record(llm, upload_id, &states, tally).await?;
            for (i, mut job) in active.into_iter().enumerate() {
                job.state = JobState::Finished;
                if i == 0 {
                    // Sealed with the round's first job: counted once.
                    job.unrecorded_usage.add(&unrecorded);
                }
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
        let mut requests = Vec::new();
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
            requests.push((hex(&key), request));
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
        // Files go to the lowest tier's endpoints in turn (each has its own
        // batch queue), each file's lines shaped for its endpoint.
        let tier: Vec<&Endpoint> = {
            let lowest = llm.primary().priority();
            llm.endpoints()
                .iter()
                .filter(|e| e.priority() == lowest)
                .collect()
        };
        let primary = llm.primary();
        let sized: Vec<(String, String)> = requests
            .iter()
            .map(|(id, r)| (id.clone(), primary.render(r).body))
            .collect();
        let mut files = Vec::new();
        let mut start = 0;
        for (i, file) in batch::input_files(&sized).into_iter().enumerate() {
            let lines = file.iter().filter(|b| **b == b'\n').count();
            let endpoint = tier[i % tier.len()];
            let file = if std::ptr::eq(endpoint, primary) {
                file
            } else {
                let lines: Vec<(String, String)> = requests[start..start + lines]
                    .iter()
                    .map(|(id, r)| (id.clone(), endpoint.render(r).body))
                    .collect();
                batch::input_files(&lines)
                    .into_iter()
                    .next()
                    .unwrap_or_default()
            };
            files.push((endpoint, file, lines));
            start += lines;
        }
        let mut jobs = Vec::with_capacity(files.len());
        let mut start = 0;
        let mut bytes = Vec::with_capacity(files.len());
        for (endpoint, file, lines) in files {
            let job = BatchJob {
                job_id: Uuid::new_v4().to_string(),
                upload_id,
                round,
                state: JobState::Preparing,
                input_file_id: None,
                batch_id: None,
                endpoint: Some(endpoint.name().to_string()),
                status: BatchStatus::Preparing,
                requests: lines as u64,
                completed: 0,
                failed: 0,
                created_at_ms: now_ms(),
                unrecorded_usage: LlmUsage::default(),
            };
            self.put_job(job.clone(), Some(keys[start..start + lines].to_vec()))
                .await?;
            start += lines;
            jobs.push(job);
            bytes.push(file);
        }
        if over_budget {
            tracing::info!(%upload_id, "batch round capped by analyzer.openai.max_cost_usd");
        }
        Ok((jobs, bytes))
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
        let endpoint = endpoint_of(llm, job)?;
        if let Some(found) = llm.find_batch(endpoint, &job.job_id).await.map_err(stop)? {
            tracing::info!(batch = %found.id, job = %job.job_id, "found the batch of an interrupted run");
            job.batch_id = Some(found.id.clone());
            job.status = found.status;
            job.state = JobState::Submitted;
            return self.put_job(job.clone(), None).await;
        }
        let file = match file {
            Some(f) => f,
            None => self.rebuild(llm, endpoint, job).await?,
        };
        if file.is_empty() {
            // Everything it held was answered meanwhile.
            job.state = JobState::Finished;
            return self.put_job(job.clone(), None).await;
        }
        let name = format!("powerpulse-{}.jsonl", job.job_id);
        let file_id = llm
            .upload_batch_file(endpoint, &name, file)
            .await
            .map_err(stop)?;
        job.input_file_id = Some(file_id.clone());
        self.put_job(job.clone(), None).await?;
        let created = llm
            .create_batch(endpoint, &file_id, &job.job_id)
            .await
            .map_err(stop)?;
        tracing::info!(
            batch = %created.id,
            endpoint = endpoint.name(),
            requests = job.requests,
            "batch created"
        );
        job.batch_id = Some(created.id);
        job.status = created.status;
        job.state = JobState::Submitted;
        self.put_job(job.clone(), None).await
    }

    /// A job's input file again, from its stored keys and the conversations
    /// still without an outcome, shaped for the job's endpoint.
    async fn rebuild(
        &self,
        llm: &OpenAiAnalyzer,
        endpoint: &Endpoint,
        job: &BatchJob,
    ) -> Result<Vec<u8>, AnalyzeStop> {
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
                requests.push((hex(&key), endpoint.render(&request).body));
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
                        && let Err(e) = llm.cancel_batch(endpoint_of(llm, job)?, id).await
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
                match llm.batch(endpoint_of(llm, job)?, &id).await {
                    Ok(now) => {
                        let changed = now.status != job.status
                            || now.request_counts.completed != job.completed
                            || now.request_counts.failed != job.failed;
                        job.status = now.status;
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
    /// conversation they answer; answers the invalid replies to re-ask, and
    /// what lines for no conversation still pending were billed.
    async fn record(
        &self,
        llm: &OpenAiAnalyzer,
        upload_id: Uuid,
        states: &[(BatchState, &Endpoint)],
        tally: &mut Tally,
    ) -> Result<(Reasks, LlmUsage), AnalyzeStop> {
        // By custom id: a line met twice (in one file, or in both) keeps
        // the better result and is billed for both.
        let mut results: HashMap<String, LineResult> = HashMap::new();
        let mut by: HashMap<String, String> = HashMap::new();
        for (state, endpoint) in states {
            if state.status == BatchStatus::Failed {
                tracing::warn!(batch = %state.id, errors = ?state.errors, "the batch failed");
            }
            for file in [&state.error_file_id, &state.output_file_id]
                .into_iter()
                .flatten()
            {
                let bytes = llm.batch_file(endpoint, file).await.map_err(stop)?;
                let before = results.len();
                let unreadable = llm.read_results(endpoint, &bytes, &mut results);
                if unreadable > 0 {
                    tracing::warn!(batch = %state.id, unreadable, "unreadable result lines");
                }
                if results.len() > before {
                    for id in results.keys() {
                        by.entry(id.clone())
                            .or_insert_with(|| endpoint.name().to_string());
                    }
                }
            }
        }
        let mut settled = Vec::new();
        let mut reasks = Reasks::new();
        // Keys whose line is recorded with a conversation's outcome, and the
        // keys of every pending conversation.
        let mut recorded: HashSet<[u8; 32]> = HashSet::new();
        let mut pending: HashSet<[u8; 32]> = HashSet::new();
        self.each_pending(upload_id, |conversation, key, _| {
            pending.insert(key);
            let id = hex(&key);
            let endpoint = by.get(&id).cloned();
            match results.get(&id) {
                Some(LineResult::Analysed(analysis, usage)) => {
                    let s = if recorded.insert(key) {
                        tally.llm.add(usage);
                        Settled::Analyzed {
                            analysis: analysis.clone(),
                            key,
                            usage: *usage,
                            endpoint,
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
                    content: Some(c),
                    ..
                }) => {
                    reasks.insert(key, (c.clone(), problem.clone()));
                }
                Some(LineResult::Invalid { .. }) => {}
                Some(LineResult::Failed { reason, .. }) => {
                    tracing::debug!(%reason, "batch line failed; asked again");
                }
                None => {}
            }
        })
        .await?;
        // Lines billed that no outcome carries: invalid replies (asked
        // again next round), and custom ids for no pending conversation (the
        // upload does not hold them, or they were answered already). Paid
        // for all the same: counted in the upload's usage, and kept with the
        // job so a resume counts them too.
        let mut unrecorded = LlmUsage::default();
        let mut strays = 0;
        for (id, line) in &results {
            match unhex(id) {
                Some(k) if recorded.contains(&k) => {}
                Some(k) if pending.contains(&k) => unrecorded.add(&line.usage()),
                _ => {
                    strays += u64::from(line.usage() != LlmUsage::default());
                    unrecorded.add(&line.usage());
                }
            }
        }
        if strays > 0 {
            tracing::warn!(
                %upload_id,
                lines = strays,
                "batch results for no pending conversation: billed, counted in the upload's cost"
            );
        }
        tally.llm.add(&unrecorded);
        while !settled.is_empty() {
            let rest = settled.split_off(settled.len().min(self.batch_size.max(1)));
            let chunk = std::mem::replace(&mut settled, rest);
            let saving = self.save_batch(upload_id, tally, chunk);
            self.saved(saving).await?;
        }
        Ok((reasks, unrecorded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: BatchStatus, batch: Option<&str>, counts: (u64, u64, u64)) -> BatchJob {
        BatchJob {
            job_id: "j".into(),
            upload_id: Uuid::nil(),
            round: 1,
            state: JobState::Submitted,
            input_file_id: None,
            batch_id: batch.map(str::to_string),
            endpoint: None,
            status,
            requests: counts.0,
            completed: counts.1,
            failed: counts.2,
            created_at_ms: 0,
            unrecorded_usage: LlmUsage::default(),
        }
    }

    #[test]
    fn progress_sums_the_round_and_shows_the_least_advanced_status() {
        let p = progress_of(
            2,
            &[
                job(BatchStatus::Completed, Some("b1"), (10, 9, 1)),
                job(BatchStatus::InProgress, Some("b2"), (5, 2, 0)),
                job(BatchStatus::Preparing, None, (3, 0, 0)),
            ],
        );
        assert_eq!(p.status, BatchStatus::Preparing);
        assert_eq!(p.round, 2);
        assert_eq!(p.batch_ids, vec!["b1", "b2"]);
        assert_eq!((p.total, p.completed, p.failed), (18, 11, 1));
        let p = progress_of(
            1,
            &[
                job(BatchStatus::Completed, Some("b1"), (1, 1, 0)),
                job(BatchStatus::Finalizing, Some("b2"), (1, 1, 0)),
            ],
        );
        assert_eq!(p.status, BatchStatus::Finalizing);
        assert_eq!(hex(&[0xab; 32]).len(), 64);
        assert_eq!(unhex(&hex(&[0xab; 32])), Some([0xab; 32]));
        assert_eq!(unhex("not hex"), None);
    }
}
