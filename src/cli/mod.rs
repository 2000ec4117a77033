//! The commands of the `powerpulse` binary: what each subcommand does, over
//! the library (the engine for `analyze` and `serve`, the store for the
//! offline reads). `main.rs` only parses the arguments and calls [`main`].
//!
//! While a `serve` holds the database, `uploads`, `export`, `analyze`,
//! `cancel` and `backup` go through it ([`remote`]) and print the same as
//! offline: each output has one function here, fed by either path.

mod remote;
mod runtime;

mod alerts;
mod audit;
mod estimate;
mod ops;
mod output;
#[cfg(unix)]
mod packaged;
mod preview;
mod redact;
mod tokens;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use powerpulse::access::{Action, AuditEntry, AuditFilter, ProofKey, Role};
use powerpulse::analyze::Analyzer;
use powerpulse::analyze::openai::batch::BatchStatus;
use powerpulse::config::{Backend, Settings};
use powerpulse::engine::Engine;
use powerpulse::export::{ExportFormat, ExportWriter, PAGE_ROWS};
use powerpulse::ingest::IngestChoice;
use powerpulse::model::Stage;
use powerpulse::pipeline::{Submission, UploadReport};
use powerpulse::privacy::Redactor;
use powerpulse::report::{RunSummary, terminal_safe, terminal_safe_lines};
use powerpulse::store::actor::GetSummary;
use powerpulse::store::{Page, Store, StoreError};
use powerpulse::store::{UploadRecord, UploadSummary};

use remote::{Lookup, Remote};

#[derive(Parser)]
#[command(
    name = "powerpulse",
    // The package version and the commit it was built from (build.rs).
    version = env!("POWERPULSE_VERSION"),
    about = "Analyse customer-support chat exports"
)]
pub struct Cli {
    /// Config file (default: ./config.toml when present; else, for root,
    /// /etc/powerpulse/config.toml when installed).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Database file (overrides storage.path).
    #[arg(long, global = true)]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse an export, analyse every conversation and store the results.
    Analyze {
        /// The export: a table (.csv, .tsv, .xlsx), JSON or JSON lines, a
        /// WhatsApp chat (.txt or its .zip), a Messenger or Telegram export,
        /// a helpdesk's JSON (Intercom, Zendesk, Freshdesk, Chatwoot), or a
        /// folder or .zip of them.
        #[arg(required_unless_present = "resume", conflicts_with = "resume")]
        file: Option<PathBuf>,
        /// Continue an unfinished, cancelled or failed upload instead.
        #[arg(long, value_name = "UPLOAD_ID")]
        resume: Option<Uuid>,
        /// Which analyzer to use (overrides analyzer.backend).
        #[arg(long, value_enum)]
        analyzer: Option<AnalyzerArg>,
        /// Conversations in flight at once (overrides analyzer.concurrency).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Print one JSON object with the summary on stdout.
        #[arg(long)]
        json: bool,
        /// Send nothing: print what analysing FILE with the LLM would cost
        /// (conversations after dedupe, tokens, sync and batch cost, time).
        #[arg(long, conflicts_with = "resume")]
        estimate: bool,
        /// Store and send nothing: print how FILE would be read (the format,
        /// where each field comes from, the senders and their roles, the
        /// first conversations as they would be analysed, the counts).
        #[arg(long, conflicts_with_all = ["resume", "estimate"])]
        dry_run: bool,
        /// Read FILE as this format (overrides ingest.format): csv, json,
        /// jsonl, xlsx, whatsapp, messenger, telegram, intercom, zendesk,
        /// freshdesk, chatwoot, threads.
        #[arg(long, value_name = "FORMAT", conflicts_with = "resume")]
        format: Option<powerpulse::ingest::Format>,
        /// A sender who speaks for the business (repeat for each; `*` for
        /// any run of characters). Given, these are the whole business side
        /// for this upload: every other sender is a customer.
        #[arg(long = "agent", value_name = "NAME", conflicts_with = "resume")]
        agents: Vec<String>,
    },
    /// Write stored results, one row per conversation.
    Export {
        /// Only this upload (default: every upload).
        #[arg(long)]
        upload: Option<Uuid>,
        #[arg(long, value_enum, default_value = "csv")]
        format: FormatArg,
        /// Output file (default: stdout).
        #[arg(long)]
        output: Option<PathBuf>,
        /// An export to share: personal data in conversation ids and
        /// summaries replaced as `[privacy]` says, agents as <AGENT_n>.
        #[arg(long)]
        redact: bool,
    },
    /// Run the HTTP control endpoint (and resume unfinished uploads).
    Serve {
        /// Address to listen on (overrides server.bind).
        #[arg(long)]
        bind: Option<String>,
        /// Which analyzer to use (overrides analyzer.backend).
        #[arg(long, value_enum)]
        analyzer: Option<AnalyzerArg>,
    },
    /// List stored uploads.
    Uploads {
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration and, with an LLM configured, reach it with one
    /// cheap request and show the rate limits it announces.
    Check,
    /// Write shell completions and man pages into DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Cancel an upload running in the server: no new analyzer calls, what
    /// is stored stays (resume it with `analyze --resume`).
    Cancel {
        #[arg(value_name = "UPLOAD_ID")]
        upload: Uuid,
    },
    /// Save a consistent snapshot of the database (also while `serve` runs).
    /// Restore: stop the server, put the file in place of the database, start it.
    Backup {
        /// The snapshot file to write (replaced if it exists).
        #[arg(long)]
        output: PathBuf,
    },
    /// Shrink the database file after deletes (needs it alone: stop `serve` first).
    Compact,
    /// Show exactly what the LLM analyzer would send for each conversation
    /// of an export, personal data redacted as `[privacy]` says (sends and
    /// stores nothing).
    Redact {
        /// The export to preview.
        #[arg(long, value_name = "FILE")]
        preview: PathBuf,
        /// Only this conversation.
        #[arg(long, value_name = "ID")]
        conversation: Option<String>,
        /// One JSON object per conversation: id, transcript, what was redacted.
        #[arg(long)]
        json: bool,
    },
    /// Issue, list or revoke the API's named tokens (`[[server.tokens]]` in
    /// the config file, kept as hashes).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The API's audit log, newest first: who did what, when, to which
    /// upload (every operator and admin action, and refused attempts).
    Audit {
        /// Only this token's entries (its name).
        #[arg(long)]
        who: Option<String>,
        /// Only this action: upload, estimate, preview, cancel, resume,
        /// delete, backup, transcript, read_audit, acknowledge_alert.
        #[arg(long)]
        action: Option<Action>,
        /// Only entries about this upload.
        #[arg(long, value_name = "UPLOAD_ID")]
        upload: Option<Uuid>,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// List the days a topic or an agent stood out from its own history
    /// (newest first), or acknowledge one with --ack.
    Alerts {
        /// Only alerts of this day (YYYY-MM-DD) or later.
        #[arg(long, value_name = "DATE")]
        from: Option<chrono::NaiveDate>,
        /// Only alerts of this day (YYYY-MM-DD) or earlier.
        #[arg(long, value_name = "DATE")]
        to: Option<chrono::NaiveDate>,
        /// Only the alerts nobody acknowledged yet.
        #[arg(long)]
        open: bool,
        /// Acknowledge this alert (its id, as listed) instead of listing.
        #[arg(long, value_name = "ID", conflicts_with_all = ["from", "to", "open"])]
        ack: Option<String>,
        /// Print one JSON object, `{"alerts": [...]}` (as `GET /api/alerts`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token: printed once on stdout; its hash is added to the
    /// config file (`--config`, or ./config.toml). The server reads it at
    /// its next start.
    Add {
        /// Who will hold it: what the audit log names.
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// Who holds a token, with its role.
    List,
    /// Revoke a token (at the server's next start).
    Remove { name: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    /// Summaries, insights, conversation lists and results, exports;
    /// transcripts redacted.
    Viewer,
    /// Also uploads, estimates, cancel, resume, full transcripts.
    Operator,
    /// Also delete, backup, the audit log.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Operator => Role::Operator,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum AnalyzerArg {
    Auto,
    Lexicon,
    Openai,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Csv,
    Json,
    Jsonl,
}

impl From<FormatArg> for ExportFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Csv => ExportFormat::Csv,
            FormatArg::Json => ExportFormat::Json,
            FormatArg::Jsonl => ExportFormat::Jsonl,
        }
    }
}

/// Whether an error is a closed stdout (`powerpulse export | head`), which is
/// the reader's choice, not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|cause| {
        let io = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind);
        // The writers wrap the I/O error in their own.
        let csv = cause
            .downcast_ref::<csv::Error>()
            .and_then(|e| match e.kind() {
                csv::ErrorKind::Io(io) => Some(io.kind()),
                _ => None,
            });
        let json = cause
            .downcast_ref::<serde_json::Error>()
            .and_then(serde_json::Error::io_error_kind);
        [io, csv, json].contains(&Some(BrokenPipe))
    })
}

/// Runs a parsed command line: sets up logging, runs the command, turns
/// its error into a message and an exit code.
pub fn main(cli: Cli) -> ExitCode {
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // A server's words, or a name from an upload, may be in it.
            let message = format!("{e:#}");
            eprintln!("error: {}", terminal_safe_lines(&message));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::GenerateAssets { dir } = &cli.command {
        return ops::generate_assets(dir);
    }
    #[cfg(unix)]
    let config = packaged::config_path(cli.config.as_deref());
    #[cfg(not(unix))]
    let config = cli.config.clone();
    let mut settings = Settings::load(config.as_deref()).context("while loading settings")?;
    powerpulse::telemetry::init(
        match cli.command {
            Command::Serve { .. } => "info",
            _ => "warn",
        },
        settings.log.format,
    );
    if let Some(db) = cli.db {
        settings.storage.path = db;
    }
    // `sudo powerpulse …` (the packaged configuration) uses the service's token.
    #[cfg(unix)]
    if let Some(token) = packaged::service_token(config.as_deref(), &settings) {
        settings.server.token = Some(token);
    }
    match cli.command {
        Command::Analyze {
            file,
            resume,
            analyzer,
            concurrency,
            json,
            estimate,
            dry_run,
            format,
            agents,
        } => {
            let choice = IngestChoice {
                format,
                agents: (!agents.is_empty()).then_some(agents),
            };
            if dry_run {
                let file = file.context("--dry-run needs a FILE")?;
                return preview::run(&settings, &file, &choice, json);
            }
            if estimate {
                let file = file.context("--estimate needs a FILE")?;
                return estimate::run(&settings, &file, json);
            }
            if let Some(a) = analyzer {
                settings.analyzer.backend = a.into();
            }
            if let Some(c) = concurrency {
                if c == 0 {
                    bail!("--concurrency must be at least 1");
                }
                settings.analyzer.concurrency = c;
            }
            let job = match (file, resume) {
                (_, Some(id)) => Job::Resume(id),
                (Some(file), None) => Job::File(file, choice),
                (None, None) => bail!("give a FILE to analyse or --resume UPLOAD_ID"),
            };
            let overridden = analyzer.is_some() || concurrency.is_some();
            analyze(settings, job, json, overridden)
        }
        Command::Export {
            upload,
            format,
            output,
            redact,
        } => export(&settings, upload, format.into(), output.as_deref(), redact),
        Command::Uploads { json } => uploads(&settings, json),
        Command::Check => ops::check(&settings, config.as_deref()),
        Command::GenerateAssets { .. } => unreachable!("handled before the settings are loaded"),
        Command::Cancel { upload } => cancel(&settings, upload),
        Command::Backup { output } => backup(&settings, &output),
        Command::Compact => compact(&settings),
        Command::Redact {
            preview,
            conversation,
            json,
        } => redact::preview(&settings, &preview, conversation.as_deref(), json),
        Command::Token { command } => match command {
            TokenCommand::Add { name, role } => {
                tokens::add(&settings, config.as_deref(), &name, role.into())
            }
            TokenCommand::List => tokens::list(&settings),
            TokenCommand::Remove { name } => tokens::remove(config.as_deref(), &name),
        },
        Command::Audit {
            who,
            action,
            upload,
            limit,
            json,
        } => {
            let filter = AuditFilter {
                who,
                action,
                upload_id: upload,
            };
            audit::run(&Db::open(&settings)?, &filter, limit, json)
        }
        Command::Alerts {
            from,
            to,
            open,
            ack,
            json,
        } => alerts::run(
            &settings,
            alerts::AlertsArgs {
                from,
                to,
                open,
                ack,
                json,
            },
        ),
        Command::Serve { bind, analyzer } => {
            if let Some(bind) = bind {
                settings.server.bind = bind;
            }
            if let Some(a) = analyzer {
                settings.analyzer.backend = a.into();
            }
            serve(settings)
        }
    }
}

impl From<AnalyzerArg> for Backend {
    fn from(a: AnalyzerArg) -> Self {
        match a {
            AnalyzerArg::Auto => Backend::Auto,
            AnalyzerArg::Lexicon => Backend::Lexicon,
            AnalyzerArg::Openai => Backend::OpenAi,
        }
    }
}

fn serve(settings: Settings) -> Result<ExitCode> {
    let addr: std::net::SocketAddr = settings.server.bind.parse().with_context(|| {
        format!(
            "server.bind {:?} is not an address like 127.0.0.1:8080",
            settings.server.bind
        )
    })?;
    // The runtime file's key: a client without a token checks this server with it.
    let runtime_key = ProofKey::generate();
    let keyring = ops::keyring_of(&settings.server).with_local_key(runtime_key);
    powerpulse::http::check_bind(&addr, &keyring).map_err(|e| anyhow::anyhow!(e.detail()))?;
    powerpulse::http::check_hosts(&addr, &settings.server.allowed_hosts)
        .map_err(|e| anyhow::anyhow!(e.detail()))?;
    let analyzer = Analyzer::from_settings(&settings.analyzer, &settings.topics, &settings.privacy)
        .context("while setting up the analyzer")?;
    tracing::info!(analyzer = analyzer.name(), model = %analyzer.model(), "analyzer selected");
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    actix_rt::System::new().block_on(async move {
        let engine = Engine::start(settings, analyzer).context("while opening the database")?;
        let signal = shutdown_signal();
        // Other commands find this server through it; removed when serving
        // ends. Without it they cannot, but the server serves all the same.
        let _runtime = runtime::RuntimeFile::write(&engine.db_path(), bound, &runtime_key)
            .inspect_err(|e| tracing::warn!(error = %format!("{e:#}"), "no runtime file"))
            .ok();
        // The database is open and the port bound (connections wait in its
        // backlog until the workers accept): tell systemd we are up.
        powerpulse::service::ready(bound);
        let watchdog = powerpulse::service::watchdog_interval().map(|every| {
            actix_rt::spawn(powerpulse::service::feed_watchdog(engine.clone(), every))
        });
        let shutdown = async {
            signal.await;
            powerpulse::service::stopping();
        };
        let served = powerpulse::http::serve(engine, listener, keyring, shutdown).await;
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        served.context("while serving")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed by this call,
/// not at the first poll: a signal that comes right after start (say, a
/// `systemctl stop` just after READY) stops the server cleanly rather than
/// killing it. Must be called inside the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What `analyze` works on.
enum Job {
    /// A file, and how to read it where `[ingest]` does not say.
    File(PathBuf, IngestChoice),
    Resume(Uuid),
}

fn analyze(settings: Settings, job: Job, json: bool, overridden: bool) -> Result<ExitCode> {
    // Checked here so a missing file never creates a database.
    if let Job::File(file, _) = &job
        && !file.exists()
    {
        bail!("{}: no such file", file.display());
    }
    let held = match &job {
        Job::Resume(_) => Some(Db::open(&settings)?),
        // A new database is made offline; an existing one may be a server's.
        Job::File(..) => match std::fs::symlink_metadata(&settings.storage.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            _ => Some(Db::open(&settings)?),
        },
    };
    // An offline store is closed here: the engine opens it again.
    let remote = match held {
        Some(Db::Remote(remote)) => Some(remote),
        local => {
            drop(local);
            None
        }
    };
    if let Some(remote) = remote {
        if overridden {
            eprintln!(
                "note: the server at {} analyses with its own settings; \
                 --analyzer and --concurrency apply offline only",
                remote.base()
            );
        }
        return analyze_remote(&remote, job, json);
    }
    let analyzer = Analyzer::from_settings(&settings.analyzer, &settings.topics, &settings.privacy)
        .context("while setting up the analyzer")?;
    if settings.analyzer.backend == Backend::Auto && !json {
        eprintln!(
            "analyzer: {} ({}) — chosen automatically",
            analyzer.name(),
            analyzer.model()
        );
    }
    let system = actix_rt::System::new();
    system.block_on(async move {
        let engine = Engine::start(settings, analyzer).context("while opening the database")?;
        if let Err(e) = engine.apply_retention().await {
            tracing::warn!(error = %e, "retention failed");
        }
        let result = run_upload(&engine, job, json).await;
        engine.shutdown().await;
        result
    })
}

/// What `analyze` prints on Ctrl-C (it cancels the upload).
const INTERRUPTED: &str = "\ninterrupted: cancelling (in-flight work is saved)…";

/// The name an upload of `file` is stored under.
fn filename_of(file: &Path) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string())
}

/// A progress bar on stderr when it is a terminal.
fn progress_bar() -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg:>10} [{bar:40}] {pos}/{len} conversations ({eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    })
}

/// Batch mode: the provider's progress on the upload's batches.
struct BatchView {
    status: BatchStatus,
    total: u64,
    /// Requests finished or failed.
    done: u64,
}

/// The provider's outage, as the CLI shows it: a line on stderr each time
/// it changes (`provider unavailable: HTTP 503 since 12:04, next try
/// 12:06`), and one when it is over.
#[derive(Default)]
struct OutageLine(Option<String>);

impl OutageLine {
    fn show(&mut self, bar: Option<&ProgressBar>, message: Option<&str>) {
        if self.0.as_deref() == message {
            return;
        }
        let line = match message {
            Some(m) => format!("{m}; the upload waits for it (Ctrl-C stops it, resumable)"),
            None => "the provider answers again; the upload goes on".to_string(),
        };
        if self.0.is_some() || message.is_some() {
            match bar {
                Some(bar) => bar.println(line),
                None => eprintln!("{line}"),
            }
        }
        self.0 = message.map(str::to_string);
    }
}

fn show_progress(
    bar: Option<&ProgressBar>,
    stage: Stage,
    total: u64,
    processed: u64,
    batch: Option<BatchView>,
) {
    let Some(bar) = bar else { return };
    match batch {
        Some(b) if stage == Stage::Analyzing => {
            bar.set_message(format!("batch {}", b.status));
            bar.set_length(b.total);
            bar.set_position(b.done);
        }
        _ => {
            bar.set_message(stage.as_str());
            bar.set_length(total);
            bar.set_position(processed);
        }
    }
}

async fn run_upload(engine: &Engine, job: Job, json: bool) -> Result<ExitCode> {
    let mut ticket = match job {
        Job::File(file, choice) => {
            let filename = filename_of(&file);
            engine
                .submit(Submission {
                    path: file,
                    filename,
                    remove_file_after: false,
                    ingest: choice,
                })
                .await?
        }
        Job::Resume(id) => engine.resume(id).await?,
    };
    let upload_id = ticket.upload_id;
    let bar = progress_bar();
    let mut outage = OutageLine::default();
    let mut interrupted = false;
    let done = loop {
        tokio::select! {
            changed = ticket.progress.changed() => {
                if changed.is_err() {
                    break (&mut ticket.done).await;
                }
                let s = ticket.progress.borrow_and_update().clone();
                let batch = s.batch.as_ref().map(|b| BatchView {
                    status: b.status,
                    total: b.total,
                    done: b.completed + b.failed,
                });
                show_progress(bar.as_ref(), s.stage, s.total_conversations, s.processed, batch);
                outage.show(bar.as_ref(), s.provider.as_ref().map(|p| p.message.as_str()));
            }
            result = &mut ticket.done => break result,
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                eprintln!("{INTERRUPTED}");
                let _ = engine.cancel(upload_id).await;
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = done.context("the upload task ended unexpectedly")??;
    let summary = engine
        .reader()
        .send(GetSummary { upload_id })
        .await
        .context("while reading the summary")??;
    print_run(&report, &summary, json)
}

fn analyze_remote(remote: &Remote, job: Job, json: bool) -> Result<ExitCode> {
    let bar = progress_bar();
    let finished = match &job {
        Job::File(file, choice) => remote.run_upload(Some((file, choice)), None, bar.as_ref()),
        Job::Resume(id) => remote.run_upload(None, Some(*id), bar.as_ref()),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let finished = finished?;
    let report = UploadReport {
        record: finished.record,
        processing_time_seconds: finished.seconds,
    };
    print_run(&report, &finished.summary, json)
}

/// The end of `analyze`, offline or through the server: the summary (text
/// or `--json`) and the exit code of the upload's status.
fn print_run(report: &UploadReport, summary: &UploadSummary, json: bool) -> Result<ExitCode> {
    let run = RunSummary::new(report, summary);
    if json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &run)?;
        writeln!(out)?;
    } else {
        print!("{}", run.render_text());
    }
    Ok(match report.record.status {
        Stage::Completed => ExitCode::SUCCESS,
        Stage::Cancelled => ExitCode::from(130),
        _ => ExitCode::FAILURE,
    })
}

/// Where a command finds the database: the file itself, or the server
/// holding it.
enum Db {
    Local(Store),
    Remote(Remote),
}

impl Db {
    /// Opens the database; when another process holds it (or this user may
    /// not open it), the server that holds it. Neither: the error says why.
    fn open(settings: &Settings) -> Result<Db> {
        let error = match open_existing(settings) {
            Ok(store) => return Ok(Db::Local(store)),
            Err(e) => e,
        };
        // A path this user may not even look at (the packaged service's
        // state directory) may still be served to them.
        let denied = std::fs::symlink_metadata(&settings.storage.path)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
        let held = match error.downcast_ref::<StoreError>() {
            Some(StoreError::Locked { .. }) => true,
            Some(StoreError::ReadOnly { .. }) => false,
            _ if denied => false,
            _ => return Err(error),
        };
        let asked = match Remote::find(settings)? {
            Lookup::Found(remote) => return Ok(Db::Remote(remote)),
            Lookup::NoServer => format!(
                "no server's runtime file at {}",
                runtime::path_for(&settings.storage.path).display()
            ),
            Lookup::NotAnswering(url) => format!("tried {url}"),
        };
        if held {
            bail!(
                "{error}, and no PowerPulse server answers for it ({asked}): if it is a \
                 `powerpulse analyze`, wait for it to end"
            );
        }
        Err(error)
    }

    /// Every upload, newest first.
    fn uploads(&self) -> Result<Vec<UploadRecord>> {
        match self {
            Db::Local(store) => Ok(store.uploads()?),
            Db::Remote(remote) => remote.uploads(),
        }
    }

    fn upload(&self, id: Uuid) -> Result<Option<UploadRecord>> {
        match self {
            Db::Local(store) => Ok(store.upload(id)?),
            Db::Remote(remote) => remote.upload(id),
        }
    }

    /// One page of the audit log, newest first, older than `before`.
    fn audit(
        &self,
        filter: &AuditFilter,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Page<AuditEntry>> {
        match self {
            Db::Local(store) => Ok(store.audit(filter, before, limit)?),
            Db::Remote(remote) => remote.audit(filter, before, limit),
        }
    }
}

fn open_existing(settings: &Settings) -> Result<Store> {
    let path = &settings.storage.path;
    // Only a file known to be missing: one this user may not see is the
    // store's to report (and maybe a server's to serve).
    if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        bail!(
            "{}: no database here yet (run `powerpulse analyze FILE` first, or pass --db)",
            path.display()
        );
    }
    Ok(Store::open(path)?)
}

fn export(
    settings: &Settings,
    upload: Option<Uuid>,
    format: ExportFormat,
    output: Option<&Path>,
    redact: bool,
) -> Result<ExitCode> {
    let db = Db::open(settings)?;
    let uploads = match upload {
        Some(id) => {
            if db.upload(id)?.is_none() {
                bail!(
                    "upload {id} not found in {}",
                    settings.storage.path.display()
                );
            }
            vec![id]
        }
        None => db.uploads()?.into_iter().map(|u| u.id).collect(),
    };
    // Customer data: a file of the owner's alone, put in place once complete.
    let file = output.map(output::PrivateFile::create).transpose()?;
    let sink: Box<dyn Write> = match &file {
        Some(file) => Box::new(std::io::BufWriter::new(file.writer()?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut writer = ExportWriter::new(format, sink);
    if redact {
        writer = writer.redacting(Redactor::new(&settings.privacy)?);
    }
    for id in uploads {
        match &db {
            Db::Local(store) => powerpulse::export::write_upload(store, id, &mut writer)?,
            // The server redacts: it has the messages whose senders' names
            // the rows are redacted knowing.
            Db::Remote(remote) if redact => {
                remote.redacted_rows(id, |row| Ok(writer.write(&row)?))?
            }
            Db::Remote(remote) => {
                let mut cursor = None;
                while let Some(next) =
                    writer.write_page(remote.page(id, cursor.as_deref(), PAGE_ROWS)?, &[])?
                {
                    cursor = Some(next);
                }
            }
        }
    }
    let rows = writer.finish()?;
    if let Some(file) = file {
        file.commit()?;
    }
    if let Some(path) = output {
        eprintln!("wrote {rows} rows to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn uploads(settings: &Settings, json: bool) -> Result<ExitCode> {
    let all = Db::open(settings)?.uploads()?;
    if json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &all)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("no uploads yet");
    }
    for u in all {
        println!(
            "{}  {:<10}  {}  {:>6} conversations  {:>6} analysed  {:>4} failed  {}",
            u.id,
            u.status.as_str(),
            u.created_at.format("%Y-%m-%d %H:%M"),
            u.counts.conversations,
            u.counts.analyzed + u.counts.skipped_already_processed,
            u.counts.failed,
            // Whoever uploaded it chose the name.
            terminal_safe(&u.filename)
        );
        if u.is_unfinished() {
            println!(
                "    unfinished: resume with `powerpulse analyze --resume {}`",
                u.id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cancel(settings: &Settings, id: Uuid) -> Result<ExitCode> {
    match Db::open(settings)? {
        // Nothing runs without a server here (an `analyze` would hold the file).
        // The server's words for the same cases.
        Db::Local(store) => match store.upload(id)? {
            None => bail!("upload {id} not found"),
            Some(r) if r.status.is_final() => {
                bail!("upload {id} has already finished ({})", r.status.as_str())
            }
            Some(r) => bail!(
                "upload {id} is not running (status {}; interrupted: `powerpulse analyze --resume {id}` \
                 or `serve` continues it)",
                r.status.as_str()
            ),
        },
        Db::Remote(remote) => {
            remote.cancel(id)?;
            println!("cancelling upload {id}: no new analyzer calls; what is stored stays");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `1234567` → `1.2 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Writes a snapshot to a temporary file beside `output`, checks that it
/// opens as a PowerPulse database, then renames it over `output`.
fn backup(settings: &Settings, output: &Path) -> Result<ExitCode> {
    let db_path = &settings.storage.path;
    if let (Ok(a), Ok(b)) = (db_path.canonicalize(), output.canonicalize())
        && a == b
    {
        bail!("--output {} is the database itself", output.display());
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".powerpulse-backup-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    match Db::open(settings)? {
        Db::Local(store) => {
            store
                .snapshot_to(tmp.path())
                .context("while taking the snapshot")?;
        }
        Db::Remote(remote) => remote
            .backup(tmp.as_file_mut())
            .context("while receiving the snapshot")?,
    }
    let uploads = Store::open(tmp.path())
        .and_then(|s| s.uploads())
        .context("the snapshot does not open as a PowerPulse database")?
        .len();
    let bytes = tmp.as_file().metadata()?.len();
    tmp.persist(output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!(
        "backed up {uploads} uploads ({}) to {}",
        size(bytes),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn compact(settings: &Settings) -> Result<ExitCode> {
    let path = &settings.storage.path;
    let store = match open_existing(settings) {
        Ok(store) => store,
        Err(e) => {
            // (Only to say who holds it: a server that cannot prove itself is
            // not named, and nothing is sent to it.)
            if matches!(e.downcast_ref(), Some(StoreError::Locked { .. }))
                && let Ok(Lookup::Found(remote)) = Remote::find(settings)
            {
                bail!(
                    "{} is held by the PowerPulse server at {}: compacting rewrites the file \
                     and needs it alone. Stop the service (e.g. `systemctl stop powerpulse`), \
                     run `powerpulse compact`, then start it again",
                    path.display(),
                    remote.base()
                );
            }
            return Err(e);
        }
    };
    let before = std::fs::metadata(path)?.len();
    store.compact().context("while compacting")?;
    let after = std::fs::metadata(path)?.len();
    eprintln!(
        "compacted {}: {} → {}",
        path.display(),
        size(before),
        size(after)
    );
    Ok(ExitCode::SUCCESS)
}
