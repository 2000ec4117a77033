//! The CLI's client of a running `serve`: when a server holds the database,
//! `uploads`, `export`, `analyze`, `cancel`, `backup` and `audit` go through
//! its HTTP API. Found from the runtime file next to the database (see
//! [`super::runtime`]), else from `server.bind`, and sent nothing before it
//! proves it holds the client's token or the runtime file's key
//! ([`Remote::find`]); the bearer token is `server.token` /
//! `POWERPULSE_TOKEN`. Only transport lives here: what the
//! commands print is shared with the offline path in `cli`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use indicatif::ProgressBar;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use powerpulse::access::{AuditEntry, AuditFilter, Nonce, Proof, ProofKey, TokenHash};
use powerpulse::analyze::estimate::Estimate;
use powerpulse::analyze::openai::batch::BatchStatus;
use powerpulse::config::Settings;
use powerpulse::export::{ExportRow, REDACTED_HEADER};
use powerpulse::ingest::IngestChoice;
use powerpulse::model::Stage;
use powerpulse::store::{ConversationRow, Page, UploadRecord, UploadSummary};

use super::runtime;

/// How long a server may take to accept a connection before it counts as
/// not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a remote `analyze` reads the upload's progress.
const POLL: Duration = Duration::from_millis(200);

/// A PowerPulse server that answered, proved itself, and how to talk to it.
pub struct Remote {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    /// Sent only when the server proved it holds it.
    token: Option<String>,
    /// A token was given but the server proved only its runtime key.
    token_unknown: bool,
}

/// How a server answered a challenge.
enum Challenge {
    /// With the right proof.
    Proven,
    /// It holds no key of that id (404).
    NotHeld,
    /// Nothing answered.
    Unreachable,
    /// Something else: not a proof of the key.
    Wrong(String),
}

/// The JSON of `GET /api/proof`.
#[derive(Deserialize)]
struct ProofAnswer {
    proof: String,
}

/// Asks the server at `base` to prove it holds `key`: a fresh nonce, the
/// key's id, nothing else (no token, no cookie).
async fn challenge(client: &reqwest::Client, base: &str, key: &ProofKey) -> Result<Challenge> {
    let nonce = Nonce::generate();
    let url = reqwest::Url::parse_with_params(
        &format!("{base}/api/proof"),
        [("nonce", nonce.to_string()), ("key", key.id().to_string())],
    )
    .with_context(|| format!("{base} is not a URL"))?;
    let Some(port) = url.port_or_known_default() else {
        bail!("{base} has no port");
    };
    let response = match client.get(url).timeout(CONNECT_TIMEOUT).send().await {
        Ok(r) => r,
        Err(_) => return Ok(Challenge::Unreachable),
    };
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(Challenge::NotHeld);
    }
    if !status.is_success() {
        return Ok(Challenge::Wrong(format!("it answered {status}")));
    }
    let proof = match response.json::<ProofAnswer>().await {
        Ok(answer) => answer.proof.parse::<Proof>().ok(),
        Err(_) => None,
    };
    Ok(match proof {
        Some(p) if key.verify(&nonce, port, &p) => Challenge::Proven,
        Some(_) => Challenge::Wrong("its answer does not match".into()),
        None => Challenge::Wrong("it gave no proof".into()),
    })
}

/// Whether something accepts connections at `base`.
fn listens(base: &str) -> bool {
    let addrs = reqwest::Url::parse(base)
        .ok()
        .and_then(|u| u.socket_addrs(|| None).ok())
        .unwrap_or_default();
    addrs
        .iter()
        .any(|a| std::net::TcpStream::connect_timeout(a, CONNECT_TIMEOUT).is_ok())
}

/// `server.bind` as a URL on this machine; `None` when it is not an
/// address. A non-loopback one is refused: the token would cross the network
/// in clear.
fn bind_url(settings: &Settings) -> Result<Option<String>> {
    let Ok(addr) = settings.server.bind.parse::<std::net::SocketAddr>() else {
        return Ok(None);
    };
    let url = runtime::local_url(addr);
    if !runtime::is_local(&url) {
        bail!(
            "server.bind {} is not an address on this machine: the CLI talks only to a server \
             on loopback (bind 0.0.0.0, or loopback, to be reached from here)",
            settings.server.bind
        );
    }
    Ok(Some(url))
}

/// The part of a progress snapshot the CLI shows.
#[derive(Deserialize)]
struct Progress {
    stage: Stage,
    total_conversations: u64,
    processed: u64,
    #[serde(default)]
    batch: Option<Batch>,
    #[serde(default)]
    provider: Option<Provider>,
}

/// The provider's outage (`ProgressSnapshot::provider`).
#[derive(Deserialize)]
struct Provider {
    message: String,
}

/// Batch mode: the provider's progress (`ProgressSnapshot::batch`).
#[derive(Deserialize)]
struct Batch {
    status: BatchStatus,
    total: u64,
    completed: u64,
    failed: u64,
}

#[derive(Deserialize)]
struct Accepted {
    upload_id: Uuid,
}

#[derive(Deserialize)]
struct ErrorBody {
    detail: String,
}

/// A remote upload that reached a final status.
pub struct Finished {
    pub record: UploadRecord,
    pub summary: UploadSummary,
    /// From sending the file (or the resume) to the final status.
    pub seconds: f64,
}

/// Whether a server serves a database.
pub enum Lookup {
    Found(Remote),
    /// No server's runtime file names one.
    NoServer,
    /// Nothing answered at this URL.
    NotAnswering(String),
}

impl Remote {
    /// The server holding `settings.storage.path`, if one answers and
    /// proves itself: the one its runtime file names, or `server.bind` when
    /// that file cannot be read or is refused (see [`runtime`]). Nothing is
    /// sent to it — no token, no file — before it has answered a challenge
    /// with the client's token ([`TokenHash::proof_key`]) or, for a client
    /// without one, the runtime file's key; a server that answers wrongly is
    /// an error, never used.
    pub fn find(settings: &Settings) -> Result<Lookup> {
        let db = &settings.storage.path;
        let (base, local_key, refused) = match runtime::read(db) {
            runtime::Found::Server(found) => (Some(found.url), found.key, None),
            runtime::Found::Nobody => return Ok(Lookup::NoServer),
            runtime::Found::Unreadable => (bind_url(settings)?, None, None),
            runtime::Found::Refused(why) => (
                bind_url(settings)?,
                None,
                Some(format!("refused the runtime file: {why}")),
            ),
        };
        let Some(base) = base else {
            return Ok(Lookup::NoServer);
        };
        let refused_note = refused.map(|r| format!("{r}; ")).unwrap_or_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("while starting the HTTP client")?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // A loopback server is never reached through a proxy.
            .no_proxy()
            .build()
            .context("while starting the HTTP client")?;
        let token = settings
            .server
            .token
            .clone()
            .filter(|t| !t.trim().is_empty());
        // The token's key first: a server proven with it may be sent it.
        let keys: Vec<(ProofKey, bool)> = token
            .as_deref()
            .map(|t| (TokenHash::of(t).proof_key(), true))
            .into_iter()
            .chain(local_key.map(|k| (k, false)))
            .collect();
        if keys.is_empty() {
            // Whether anything listens there at all (a connection carries no data).
            if !listens(&base) {
                return Ok(Lookup::NotAnswering(base));
            }
            bail!(
                "{refused_note}cannot make sure that the server at {base} is the PowerPulse server \
                 holding {}: it proves itself with a key the client shares, and there is none here. \
                 Set POWERPULSE_TOKEN (or server.token) to a token of the server's, or run this as \
                 the user the server runs as, who may read its runtime file {}",
                db.display(),
                runtime::path_for(db).display()
            );
        }
        for (key, is_token) in keys {
            match rt.block_on(challenge(&client, &base, &key))? {
                Challenge::Proven => {
                    let token_unknown = !is_token && token.is_some();
                    return Ok(Lookup::Found(Remote {
                        rt,
                        client,
                        base,
                        // Proven with the runtime key only: the token stays here.
                        token: token.filter(|_| is_token),
                        token_unknown,
                    }));
                }
                Challenge::NotHeld => continue,
                Challenge::Unreachable => return Ok(Lookup::NotAnswering(base)),
                Challenge::Wrong(what) => bail!(
                    "{refused_note}the server at {base} did not prove that it holds {}: {what}. \
                     It may not be PowerPulse (another program on its port?): nothing was sent to it",
                    if is_token {
                        "your token"
                    } else {
                        "its runtime file's key"
                    }
                ),
            }
        }
        bail!(
            "{refused_note}the server at {base} holds none of the keys this client has{}: \
             nothing was sent to it (a PowerPulse older than this CLI answers no challenge)",
            if token.is_some() {
                ": the token in POWERPULSE_TOKEN (or server.token) is not one of its tokens"
            } else {
                ""
            }
        )
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_with(method, path, &[])
    }

    /// A request to `path` with a query string (its values encoded).
    fn request_with(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.base);
        let r = match reqwest::Url::parse_with_params(&url, query) {
            Ok(url) => self.client.request(method, url),
            // Unreachable for our own URLs; reqwest reports it on send.
            Err(_) => self.client.request(method, url),
        };
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends a request; a refusal becomes an error with the server's words.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("while talking to the PowerPulse server at {}", self.base))?;
        self.checked(response).await
    }

    async fn checked(&self, response: reqwest::Response) -> Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            if self.token_unknown {
                bail!(
                    "the PowerPulse server at {} does not know the token in POWERPULSE_TOKEN (or \
                     server.token): it was not sent",
                    self.base
                );
            }
            bail!(
                "the PowerPulse server at {} wants its token: set POWERPULSE_TOKEN (or server.token)",
                self.base
            );
        }
        let body = response.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => Err(anyhow!(e.detail)),
            Err(_) => Err(anyhow!(
                "the PowerPulse server at {} answered {status}",
                self.base
            )),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.send(self.request(reqwest::Method::GET, path)).await?;
        response
            .json()
            .await
            .with_context(|| format!("while reading {path} from {}", self.base))
    }

    /// `method` on `path`, read as `what`; `None` when the server answers
    /// 404 (it knows no such thing).
    async fn optional<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        what: &str,
    ) -> Result<Option<T>> {
        let response =
            self.request(method, path).send().await.with_context(|| {
                format!("while talking to the PowerPulse server at {}", self.base)
            })?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let value = self.checked(response).await?.json().await;
        value
            .map(Some)
            .with_context(|| format!("while reading {what}"))
    }

    /// Every upload, newest first.
    pub fn uploads(&self) -> Result<Vec<UploadRecord>> {
        self.rt.block_on(self.get("/api/uploads"))
    }

    /// One upload's record; `None` when the server does not know it.
    pub fn upload(&self, id: Uuid) -> Result<Option<UploadRecord>> {
        self.rt.block_on(self.optional(
            reqwest::Method::GET,
            &format!("/api/uploads/{id}"),
            "the upload's record",
        ))
    }

    /// One page of an upload's outcomes after `cursor`, `rows` at most.
    pub fn page(
        &self,
        id: Uuid,
        cursor: Option<&str>,
        rows: usize,
    ) -> Result<Page<ConversationRow>> {
        self.rt.block_on(async {
            let limit = rows.to_string();
            let mut query = vec![("limit", limit.as_str())];
            query.extend(cursor.map(|c| ("cursor", c)));
            let request = self.request_with(
                reqwest::Method::GET,
                &format!("/api/uploads/{id}/conversations"),
                &query,
            );
            let response = self.send(request).await?;
            response
                .json()
                .await
                .with_context(|| format!("while reading upload {id}'s results"))
        })
    }

    /// An upload's export as the server redacts it (`?redact=true`), row by
    /// row. A server that does not say it redacted (one older than
    /// redaction, which ignores the parameter) is refused, not trusted.
    pub fn redacted_rows(
        &self,
        id: Uuid,
        mut each: impl FnMut(ExportRow) -> Result<()>,
    ) -> Result<()> {
        self.rt.block_on(async {
            let request = self.request_with(
                reqwest::Method::GET,
                &format!("/api/uploads/{id}/export"),
                &[("format", "jsonl"), ("redact", "true")],
            );
            let mut response = self.send(request).await?;
            if response.headers().get(REDACTED_HEADER).is_none() {
                bail!(
                    "the PowerPulse server at {} does not redact exports (an older version?): \
                     nothing was written",
                    self.base
                );
            }
            let mut pending: Vec<u8> = Vec::new();
            let mut line_of = |line: &[u8]| -> Result<()> {
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                each(serde_json::from_slice(line).context("while reading a redacted row")?)
            };
            while let Some(chunk) = response
                .chunk()
                .await
                .with_context(|| format!("while reading upload {id}'s export"))?
            {
                pending.extend_from_slice(&chunk);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    line_of(&line)?;
                }
            }
            line_of(&pending)
        })
    }

    /// One page of the audit log, newest first, older than `before`.
    pub fn audit(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Page<AuditEntry>> {
        self.rt.block_on(async {
            let limit = limit.to_string();
            let (upload, before) = (
                filter.upload_id.map(|u| u.to_string()),
                before.map(|b| b.to_string()),
            );
            let mut query = vec![("limit", limit.as_str())];
            query.extend(filter.who.as_deref().map(|w| ("who", w)));
            query.extend(filter.action.map(|a| ("action", a.as_str())));
            query.extend(upload.as_deref().map(|u| ("upload_id", u)));
            query.extend(before.as_deref().map(|c| ("cursor", c)));
            let request = self.request_with(reqwest::Method::GET, "/api/audit", &query);
            self.send(request)
                .await?
                .json()
                .await
                .context("while reading the audit log")
        })
    }

    /// Alerts of the days from `from` to `to`, only unacknowledged ones when `open`.
    pub fn alerts(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        open: bool,
    ) -> Result<Vec<powerpulse::alerts::Alert>> {
        #[derive(Deserialize)]
        struct List {
            alerts: Vec<powerpulse::alerts::Alert>,
        }
        self.rt.block_on(async {
            let mut query = vec![("open", if open { "true" } else { "false" })];
            query.extend(from.map(|f| ("from", f)));
            query.extend(to.map(|t| ("to", t)));
            let request = self.request_with(reqwest::Method::GET, "/api/alerts", &query);
            let list: List = self
                .send(request)
                .await?
                .json()
                .await
                .context("while reading the alerts")?;
            Ok(list.alerts)
        })
    }

    /// Acknowledges an alert; `None` when the server has no such alert.
    pub fn acknowledge(&self, id: &str) -> Result<Option<powerpulse::alerts::Alert>> {
        self.rt.block_on(self.optional(
            reqwest::Method::POST,
            &format!("/api/alerts/{id}/ack"),
            "the alert",
        ))
    }

    /// Cancels an upload running in the server.
    pub fn cancel(&self, id: Uuid) -> Result<()> {
        self.rt.block_on(self.cancel_async(id))
    }

    async fn cancel_async(&self, id: Uuid) -> Result<()> {
        self.send(self.request(reqwest::Method::DELETE, &format!("/api/progress/{id}")))
            .await
            .map(drop)
    }

    /// Saves the server's snapshot of the database (`GET /api/backup`) into `to`.
    pub fn backup(&self, to: &mut std::fs::File) -> Result<()> {
        self.rt.block_on(async {
            let response = self
                .send(self.request(reqwest::Method::GET, "/api/backup"))
                .await?;
            let expected = response.content_length();
            let mut out = tokio::fs::File::from_std(to.try_clone()?);
            let mut body = response.bytes_stream();
            let mut received = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.context("the snapshot was interrupted")?;
                received += chunk.len() as u64;
                out.write_all(&chunk).await?;
            }
            out.flush().await?;
            if expected.is_some_and(|n| n != received) {
                bail!("the snapshot was cut short ({received} of {expected:?} bytes)");
            }
            out.sync_all().await?;
            Ok(())
        })
    }

    /// Sends `file` to the server (or resumes `resume`), shows its progress
    /// on `bar`, cancels it on Ctrl-C, and answers once it is final.
    pub fn run_upload(
        &self,
        file: Option<(&Path, &IngestChoice)>,
        resume: Option<Uuid>,
        bar: Option<&ProgressBar>,
    ) -> Result<Finished> {
        self.rt.block_on(async {
            let started = Instant::now();
            let id = match (file, resume) {
                (Some((file, choice)), _) => self.upload_file(file, choice).await?,
                (None, Some(id)) => {
                    self.send(self.request(
                        reqwest::Method::POST,
                        &format!("/api/uploads/{id}/resume"),
                    ))
                    .await?;
                    id
                }
                (None, None) => bail!("give a FILE to analyse or --resume UPLOAD_ID"),
            };
            let mut tick = tokio::time::interval(POLL);
            let mut interrupted = false;
            let mut outage = super::OutageLine::default();
            let record = loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let p: Progress = self.get(&format!("/api/progress/{id}")).await?;
                        let batch = p.batch.as_ref().map(|b| super::BatchView {
                            status: b.status,
                            total: b.total,
                            done: b.completed + b.failed,
                        });
                        super::show_progress(bar, p.stage, p.total_conversations, p.processed, batch);
                        outage.show(bar, p.provider.as_ref().map(|p| p.message.as_str()));
                        if p.stage.is_final() {
                            // The record is written before the final state is published.
                            let record: UploadRecord = self.get(&format!("/api/uploads/{id}")).await?;
                            if record.status.is_final() {
                                break record;
                            }
                        }
                    }
                    _ = tokio::signal::ctrl_c(), if !interrupted => {
                        interrupted = true;
                        eprintln!("{}", super::INTERRUPTED);
                        let _ = self.cancel_async(id).await;
                    }
                }
            };
            let summary = self.get(&format!("/api/uploads/{id}/summary")).await?;
            Ok(Finished {
                record,
                summary,
                seconds: started.elapsed().as_secs_f64(),
            })
        })
    }

    /// What analysing `file` would cost, as the server estimates it
    /// (its processed index, the limits its provider announced).
    pub fn estimate(&self, file: &Path) -> Result<Estimate> {
        self.rt.block_on(async {
            let filename = super::filename_of(file);
            let body = tokio::fs::read(file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))?;
            let request = self
                .request_with(
                    reqwest::Method::POST,
                    "/api/estimate",
                    &[("filename", filename.as_str())],
                )
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body);
            self.send(request)
                .await?
                .json()
                .await
                .context("while reading the server's estimate")
        })
    }

    /// Streams `file` as a raw upload; answers the upload's id.
    async fn upload_file(&self, file: &Path, choice: &IngestChoice) -> Result<Uuid> {
        if file.is_dir() {
            bail!(
                "{}: a folder cannot be sent to the server at {}; zip it and analyse the zip",
                file.display(),
                self.base
            );
        }
        let filename = super::filename_of(file);
        let f = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("cannot read {}", file.display()))?;
        let len = f.metadata().await?.len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f));
        let mut query = vec![("filename", filename)];
        if let Some(format) = choice.format {
            query.push(("format", format.to_string()));
        }
        if let Some(agents) = &choice.agents {
            query.push(("agents", agents.join("\n")));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let request = self
            .request_with(reqwest::Method::POST, "/api/upload", &query)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        let accepted: Accepted = self
            .send(request)
            .await?
            .json()
            .await
            .context("while reading the server's answer to the upload")?;
        Ok(accepted.upload_id)
    }
}
