//! Batch jobs (`analyzer.openai.mode = "batch"`): one row per input file
//! sent to the Batch API, written before anything is uploaded, so a kill,
//! a shutdown or a restart finds its batch again instead of paying for a
//! second one.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Result, Store, StoreError, decode, encode, key};
use crate::analyze::LlmUsage;
use crate::analyze::openai::batch::BatchStatus;

/// Where a batch job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Recorded; its file may or may not be uploaded, its batch may or may
    /// not exist (look it up by the job id before creating one).
    Preparing,
    /// The batch exists (`batch_id`); results not read yet.
    Submitted,
    /// Results read and recorded (what failed is asked again elsewhere).
    Finished,
}

/// One input file's batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchJob {
    /// Tags the batch (`metadata.powerpulse_job`).
    pub job_id: String,
    pub upload_id: Uuid,
    /// 1 for the first batch of an upload's conversations; follow-up
    /// batches of what failed count up.
    pub round: u32,
    pub state: JobState,
    pub input_file_id: Option<String>,
    pub batch_id: Option<String>,
    /// The endpoint holding the batch (`None` in jobs of older versions:
    /// the primary endpoint). A resume polls that one, whatever the
    /// configuration says now.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The provider's last word on it (`preparing` until the batch exists).
    #[serde(deserialize_with = "BatchStatus::lenient")]
    pub status: BatchStatus,
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    pub created_at_ms: i64,
    /// What its result lines were billed that no conversation's outcome
    /// carries (invalid replies asked again in the next round; custom ids
    /// the upload does not hold, or answered twice): part of the upload's
    /// usage.
    #[serde(default)]
    pub unrecorded_usage: LlmUsage,
}

impl Store {
    /// Records a batch job and the content keys of its requests.
    pub(crate) fn put_batch_job(&self, job: &BatchJob, keys: Option<&[[u8; 32]]>) -> Result<()> {
        let k = (key(job.upload_id), job.job_id.as_str());
        let value = encode("batch job", job)?;
        self.write(|t| {
            t.batch_jobs.insert(k, value.as_slice())?;
            if let Some(keys) = keys {
                let flat: Vec<u8> = keys.iter().flatten().copied().collect();
                t.batch_keys.insert(k, flat.as_slice())?;
            }
            Ok(())
        })
    }

    /// An upload's batch jobs, oldest round first.
    pub fn batch_jobs(&self, upload_id: Uuid) -> Result<Vec<BatchJob>> {
        let k = key(upload_id);
        let mut jobs = self.read(|t| {
            t.batch_jobs
                .range((k, "")..(k.wrapping_add(1), ""))?
                .map(|entry| {
                    let (_, v) = entry?;
                    decode::<BatchJob>("batch job", v.value())
                })
                .collect::<Result<Vec<_>>>()
        })?;
        jobs.sort_by_key(|j| (j.round, j.created_at_ms));
        Ok(jobs)
    }

    /// The content keys a batch job's requests were made for.
    pub fn batch_job_keys(&self, upload_id: Uuid, job_id: &str) -> Result<Vec<[u8; 32]>> {
        self.read(|t| {
            let Some(flat) = t.batch_keys.get((key(upload_id), job_id))? else {
                return Ok(Vec::new());
            };
            let flat = flat.value();
            if flat.len() % 32 != 0 {
                return Err(StoreError::Corrupt {
                    what: "batch job keys",
                    message: format!("{} bytes is not a whole number of keys", flat.len()),
                });
            }
            Ok(flat
                .chunks_exact(32)
                .map(|c| {
                    let mut k = [0u8; 32];
                    k.copy_from_slice(c);
                    k
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_and_their_keys_round_trip_and_go_with_their_upload() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("b.redb")).unwrap();
        let upload = Uuid::new_v4();
        let other = Uuid::new_v4();
        let job = |id: &str, upload_id: Uuid, round: u32| BatchJob {
            job_id: id.into(),
            upload_id,
            round,
            state: JobState::Preparing,
            input_file_id: None,
            batch_id: None,
            endpoint: Some("e".into()),
            status: BatchStatus::Preparing,
            requests: 2,
            completed: 0,
            failed: 0,
            created_at_ms: 1,
            unrecorded_usage: LlmUsage::default(),
        };
        store
            .put_batch_job(&job("b", upload, 2), Some(&[[2; 32]]))
            .unwrap();
        store
            .put_batch_job(&job("a", upload, 1), Some(&[[1; 32], [3; 32]]))
            .unwrap();
        store.put_batch_job(&job("c", other, 1), None).unwrap();
        let mut submitted = job("a", upload, 1);
        submitted.state = JobState::Submitted;
        submitted.batch_id = Some("batch_1".into());
        store.put_batch_job(&submitted, None).unwrap();
        let jobs = store.batch_jobs(upload).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0], submitted);
        assert_eq!(
            store.batch_job_keys(upload, "a").unwrap(),
            vec![[1; 32], [3; 32]],
            "keys stay when only the job is updated"
        );
        // A job as older versions wrote it reads back.
        let old = br#"{"job_id":"o","upload_id":"00000000-0000-0000-0000-000000000000","round":1,"state":"preparing","input_file_id":null,"batch_id":null,"status":"","requests":1,"completed":0,"failed":0,"created_at_ms":5}"#;
        let job: BatchJob = decode("batch job", old).unwrap();
        assert_eq!((job.status, job.endpoint), (BatchStatus::Preparing, None));
        store.delete_upload(upload).unwrap();
        assert!(store.batch_jobs(upload).unwrap().is_empty());
        assert!(store.batch_job_keys(upload, "a").unwrap().is_empty());
        assert_eq!(store.batch_jobs(other).unwrap().len(), 1);
    }
}
