//! Operator commands: `check` (is this configuration going to work?) and the
//! hidden `generate-assets` (completions and man pages for the package).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use powerpulse::access::{Keyring, SERVER_TOKEN_NAME};
use powerpulse::analyze::openai::limits::{Announced, AnnouncedLimit};
use powerpulse::analyze::openai::negotiate::StructuredMode;
use powerpulse::analyze::openai::{Learned, ProbeError};
use powerpulse::analyze::{Analyzer, OpenAiAnalyzer};
use powerpulse::config::{LogFormat, Settings};
use powerpulse::notify::Webhook;
use powerpulse::report::terminal_safe;
use powerpulse::store::{Store, StoreError};

/// Prints what the configuration amounts to, one `name: value` line per
/// part, and reaches the LLM endpoint when one is configured. Fails when
/// anything would stop `serve` or `analyze`.
pub fn check(settings: &Settings, config: Option<&Path>) -> Result<ExitCode> {
    let mut problems = 0;
    let mut problem = |what: &str, detail: String| {
        problems += 1;
        println!("{what}: PROBLEM: {detail}");
    };
    println!("version: powerpulse {}", env!("POWERPULSE_VERSION"));
    let file = config.or_else(|| Some(Path::new("config.toml")).filter(|p| p.exists()));
    match file {
        Some(path) => {
            println!("config: {} (valid)", path.display());
            if !settings.server.tokens.is_empty()
                && let Some(why) = super::tokens::exposed(path)
            {
                problem("config", why);
            }
        }
        None => println!("config: no file (defaults and environment)"),
    }

    let server = &settings.server;
    let keyring = keyring_of(server);
    match server.bind.parse::<std::net::SocketAddr>() {
        Err(_) => problem(
            "server",
            format!(
                "server.bind {:?} is not an address like 127.0.0.1:8080",
                server.bind
            ),
        ),
        Ok(addr) => {
            let refused = powerpulse::http::check_bind(&addr, &keyring)
                .and_then(|()| powerpulse::http::check_hosts(&addr, &server.allowed_hosts));
            match refused {
                Err(e) => problem("server", e.detail()),
                Ok(()) => println!("server: {addr}, {}", describe_tokens(server)),
            }
        }
    }

    let db = &settings.storage.path;
    match std::fs::metadata(db) {
        Ok(meta) => println!("database: {} ({} bytes)", db.display(), meta.len()),
        Err(_) => println!("database: {} (not created yet)", db.display()),
    }
    println!(
        "log format: {}",
        match settings.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    );

    match Webhook::from_settings(&settings.notify) {
        Ok(None) => println!("webhook: off"),
        Ok(Some(hook)) => println!(
            "webhook: {} ({}, {} attempts)",
            hook.host(),
            if settings
                .notify
                .secret
                .as_deref()
                .is_some_and(|s| !s.is_empty())
            {
                "signed"
            } else {
                "unsigned: set POWERPULSE_WEBHOOK_SECRET to sign"
            },
            settings.notify.max_attempts
        ),
        Err(e) => problem("webhook", e.to_string()),
    }

    match Analyzer::from_settings(&settings.analyzer, &settings.topics, &settings.privacy) {
        Err(e) => problem("analyzer", e.to_string()),
        Ok(Analyzer::Lexicon(_)) => println!("analyzer: lexicon (offline: nothing to reach)"),
        Ok(Analyzer::OpenAi(llm)) => {
            if llm.endpoints().len() == 1 {
                let e = llm.primary();
                println!("analyzer: openai, model {} at {}", e.model(), e.chat_url());
            } else {
                println!("analyzer: openai, {} endpoints", llm.endpoints().len());
            }
            match llm.redactor() {
                Some(r) => println!(
                    "privacy: personal data redacted from transcripts (policy {})",
                    r.fingerprint()
                ),
                None => println!(
                    "privacy: transcripts sent as written (privacy.redact = \"{}\")",
                    settings.privacy.redact.as_str()
                ),
            }
            let learnt = actix_rt::System::new().block_on(check_endpoints(&llm, &mut problem));
            remember(settings, &learnt);
        }
    }

    if problems == 0 {
        println!("ok");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{problems} problem(s)");
        Ok(ExitCode::FAILURE)
    }
}

/// Probes every LLM endpoint: that it answers (and its limits), that the
/// token budget's parameter is honoured, and which structured-output mode
/// its server takes, from the most exact down. Answers what each learnt,
/// for the database.
async fn check_endpoints(
    llm: &OpenAiAnalyzer,
    problem: &mut impl FnMut(&str, String),
) -> Vec<Learned> {
    let several = llm.endpoints().len() > 1;
    let mut learnt = Vec::new();
    for (i, endpoint) in llm.endpoints().iter().enumerate() {
        let label = if several {
            format!("endpoint {}", endpoint.name())
        } else {
            "endpoint".to_string()
        };
        if several {
            println!(
                "{label}: model {} at {} (priority {}, weight {})",
                endpoint.model(),
                endpoint.chat_url(),
                endpoint.priority(),
                endpoint.weight()
            );
        }
        let budget_before = endpoint.budget();
        match llm.probe(i).await {
            Ok(p) => {
                println!(
                    "{label}: answered HTTP {} in {} ms",
                    p.status,
                    p.elapsed.as_millis()
                );
                println!(
                    "{}limits: {}",
                    prefix(several, endpoint.name()),
                    describe(&p.announced)
                );
                let budget = match p.budget_honoured {
                    Some(true) if p.budget != budget_before => format!(
                        "{} (the server ignores {}: switched)",
                        p.budget.name(),
                        budget_before.name()
                    ),
                    Some(true) => format!("{} (honoured)", p.budget.name()),
                    Some(false) => format!(
                        "{} (NOT honoured: replies may run past max_output_tokens)",
                        p.budget.name()
                    ),
                    None => format!("{} (the server reports no usage)", p.budget.name()),
                };
                println!("{}token budget: {budget}", prefix(several, endpoint.name()));
            }
            Err(e) => {
                if let ProbeError::Refused { announced, .. } = &e
                    && !announced.is_empty()
                {
                    println!(
                        "{}limits: {}",
                        prefix(several, endpoint.name()),
                        describe(announced)
                    );
                }
                problem(&label, e.to_string());
                continue;
            }
        }
        match llm.negotiate(i).await {
            Ok(mode) => {
                let note = if mode == StructuredMode::JsonSchema || mode == StructuredMode::Prompt {
                    String::new()
                } else {
                    " (the server refuses the stricter modes; analysis starts here)".to_string()
                };
                println!(
                    "{}structured output: {}{note}",
                    prefix(several, endpoint.name()),
                    mode.describe()
                );
            }
            Err(e) => problem(&format!("{label} structured output"), e.to_string()),
        }
        learnt.push(Learned {
            key: endpoint.memory_key().to_string(),
            memory: endpoint.memory("found by powerpulse check"),
        });
    }
    learnt
}

fn prefix(several: bool, name: &str) -> String {
    if several {
        format!("endpoint {name} ")
    } else {
        String::new()
    }
}

/// Stores what `check` found in the database, so the first upload starts
/// there; beside a running server (which holds the file) it is left for the
/// server to find out on its first calls.
fn remember(settings: &Settings, learnt: &[Learned]) {
    if learnt.is_empty() {
        return;
    }
    match Store::open(&settings.storage.path) {
        Ok(store) => {
            for l in learnt {
                if let Err(e) = store.put_endpoint_memory(&l.key, &l.memory) {
                    println!("endpoints: could not remember what was found: {e}");
                    return;
                }
            }
            println!(
                "endpoints: what was found is remembered in {}",
                settings.storage.path.display()
            );
        }
        Err(StoreError::Locked { .. }) => println!(
            "endpoints: the database is held by a running server, which finds this out on its first calls"
        ),
        Err(e) => println!("endpoints: could not remember what was found: {e}"),
    }
}

/// `5000 requests/min (4999 left, resets in 12ms); 800000 tokens/min (…)`.
fn describe(announced: &Announced) -> String {
    if announced.is_empty() {
        return "none announced (requests are paced by 429 answers only)".into();
    }
    let one = |limit: &AnnouncedLimit, what: &str| {
        let mut text = match limit.limit_per_minute {
            Some(n) => format!("{n} {what}/min"),
            None => format!("no {what} limit"),
        };
        let mut notes = Vec::new();
        if let Some(left) = limit.remaining {
            notes.push(format!("{left} left"));
        }
        if let Some(reset) = &limit.reset {
            notes.push(format!("resets in {reset}"));
        }
        if !notes.is_empty() {
            text.push_str(&format!(" ({})", notes.join(", ")));
        }
        text
    };
    format!(
        "{}; {}",
        one(&announced.requests, "requests"),
        one(&announced.tokens, "tokens")
    )
}

/// Writes `completions/` (bash, zsh, fish) and `man/` (one page per
/// command) into `dir`. tests/cli checks that `packaging/generated/` is what
/// this writes, so the package never ships stale ones.
pub fn generate_assets(dir: &Path) -> Result<ExitCode> {
    use clap_complete::Shell;
    let root = super::Cli::command();
    // The documented command: hidden subcommands (this one) and `help` left
    // out; the package version only (the commit would change every page).
    let mut cmd = clap::Command::new("powerpulse")
        .version(env!("CARGO_PKG_VERSION"))
        .about(root.get_about().cloned().unwrap_or_default())
        .subcommand_required(true)
        .disable_help_subcommand(true)
        .args(root.get_arguments().cloned())
        .subcommands(root.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    cmd.build();
    let completions = dir.join("completions");
    let man = dir.join("man");
    for d in [&completions, &man] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "powerpulse", &completions)
            .with_context(|| format!("cannot write {shell} completions"))?;
    }
    clap_mangen::generate_to(cmd, &man).context("cannot write the man pages")?;
    Ok(ExitCode::SUCCESS)
}

/// The tokens `serve` accepts: `server.token` (an admin) and `[[server.tokens]]`.
pub fn keyring_of(server: &powerpulse::config::ServerSettings) -> Keyring {
    Keyring::new(server.token.as_deref(), &server.tokens)
}

/// `no token (…)`, or who holds one, with their roles.
fn describe_tokens(server: &powerpulse::config::ServerSettings) -> String {
    let mut holders: Vec<String> = server
        .tokens
        .iter()
        .map(|t| format!("{} ({})", terminal_safe(&t.name), t.role))
        .collect();
    if server
        .token
        .as_deref()
        .is_some_and(|t| !t.trim().is_empty())
    {
        holders.insert(0, format!("{SERVER_TOKEN_NAME} (admin)"));
    }
    if holders.is_empty() {
        "no token: anyone who can connect may do anything".to_string()
    } else {
        format!("tokens: {}", holders.join(", "))
    }
}
