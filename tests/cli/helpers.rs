//! Running the binary in a scratch directory and reading its database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use powerpulse::store::Store;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A scratch directory with its own database; the binary runs inside it so
/// no stray config.toml is picked up.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn db(&self) -> PathBuf {
        self.path("pp.redb")
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).expect("write fixture");
        p
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_env(args, &[])
    }

    /// Like [`Sandbox::run`], with extra environment variables.
    pub fn run_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let out: Output = Command::new(env!("CARGO_BIN_EXE_powerpulse"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("OPENAI_API_KEY")
            .env_remove("RUST_LOG")
            .env_remove("POWERPULSE_TOKEN")
            .env("POWERPULSE_DB", self.db())
            .envs(vars.iter().copied())
            .output()
            .expect("run powerpulse");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn analyze(&self, file: &Path) -> Run {
        self.run(&["analyze", file.to_str().unwrap(), "--json"])
    }

    /// Opens the database the runs wrote (the binary has exited, so the lock is free).
    pub fn store(&self) -> Store {
        Store::open(self.db()).expect("reopen database")
    }
}

/// The bundled sample export.
pub fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample_export.csv")
}

/// A small export in the canonical columns: `n` conversations of 4 messages
/// (bot greeting with *977#, customer, agent, customer).
pub fn conversations(n: usize) -> Vec<[String; 4]> {
    let mut rows = Vec::new();
    for c in 0..n {
        let id = format!("conv-{c:04}");
        let closing = match c % 3 {
            0 => "Thank you so much, it works now!",
            1 => "This is useless, I am still without power. Worst service.",
            _ => "Okay, I will check the meter reading tomorrow.",
        };
        let texts: [(&str, String); 4] = [
            ("bot", "Welcome! Dial *977# for self-service.".to_string()),
            (
                "customer",
                format!("Hello, my account {c} has a problem, with \"quotes\", commas"),
            ),
            (
                "agent",
                "Let me check that for you.\nOne moment please.".to_string(),
            ),
            ("customer", closing.to_string()),
        ];
        for (i, (role, text)) in texts.into_iter().enumerate() {
            rows.push([
                id.clone(),
                role.to_string(),
                text,
                format!("2026-03-{:02}T10:{:02}:00Z", 1 + c % 28, i),
            ]);
        }
    }
    rows
}

pub fn to_csv(rows: &[[String; 4]]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["conversation_id", "sender", "message", "timestamp"])
        .unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.into_inner().unwrap()
}

fn row_json(r: &[String; 4]) -> serde_json::Value {
    serde_json::json!({"chat_id": r[0], "role": r[1], "text": r[2], "created_at": r[3]})
}

pub fn to_json_rows(rows: &[[String; 4]]) -> Vec<u8> {
    serde_json::to_vec_pretty(&rows.iter().map(row_json).collect::<Vec<_>>()).unwrap()
}

pub fn to_json_nested(rows: &[[String; 4]]) -> Vec<u8> {
    let mut convs: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for r in rows {
        let m = serde_json::json!({"sender": r[1], "message": r[2], "timestamp": r[3]});
        match convs.last_mut() {
            Some((id, ms)) if *id == r[0] => ms.push(m),
            _ => convs.push((r[0].clone(), vec![m])),
        }
    }
    let v: Vec<_> = convs
        .into_iter()
        .map(|(id, messages)| serde_json::json!({"id": id, "messages": messages}))
        .collect();
    serde_json::to_vec(&v).unwrap()
}

pub fn to_jsonl(rows: &[[String; 4]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, &row_json(r)).unwrap();
        out.push(b'\n');
    }
    out
}

pub fn to_xlsx(rows: &[[String; 4]], path: &Path) {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in ["Conversation ID", "Sender Type", "Body", "Sent At"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for (i, r) in rows.iter().enumerate() {
        for (c, v) in r.iter().enumerate() {
            sheet.write_string(i as u32 + 1, c as u16, v).unwrap();
        }
    }
    book.save(path).unwrap();
}

/// What the database holds, for before/after comparisons.
pub fn fingerprint(store: &Store) -> (Vec<String>, u64, Vec<u64>) {
    let uploads = store.uploads().unwrap();
    let ids: Vec<String> = uploads
        .iter()
        .map(|u| format!("{}:{:?}", u.id, u.status))
        .collect();
    let messages = uploads
        .iter()
        .map(|u| store.message_count(u.id).unwrap())
        .collect();
    (ids, store.processed_len().unwrap(), messages)
}

/// A `powerpulse serve` over a sandbox's database, on a free loopback port,
/// found (as the CLI finds it) through the runtime file it writes.
pub struct Served {
    child: std::process::Child,
    pub url: String,
    runtime_file: PathBuf,
}

impl Sandbox {
    /// Starts `serve` with the lexicon analyzer; answers once its runtime
    /// file names where it listens.
    pub fn serve(&self, vars: &[(&str, &str)]) -> Served {
        self.serve_with("lexicon", vars)
    }

    /// [`Sandbox::serve`] with the given `--analyzer`.
    pub fn serve_with(&self, analyzer: &str, vars: &[(&str, &str)]) -> Served {
        self.spawn_serve(&[], analyzer, vars)
    }

    /// [`Sandbox::serve`] with `--config config`.
    pub fn serve_configured(&self, config: &Path, vars: &[(&str, &str)]) -> Served {
        self.spawn_serve(&["--config", config.to_str().unwrap()], "lexicon", vars)
    }

    fn spawn_serve(&self, global: &[&str], analyzer: &str, vars: &[(&str, &str)]) -> Served {
        let child = Command::new(env!("CARGO_BIN_EXE_powerpulse"))
            .args(global)
            .args(["serve", "--bind", "127.0.0.1:0", "--analyzer", analyzer])
            .current_dir(self.dir.path())
            .env_remove("OPENAI_API_KEY")
            .env_remove("POWERPULSE_TOKEN")
            .env("RUST_LOG", "warn")
            .env("POWERPULSE_DB", self.db())
            .envs(vars.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn serve");
        let mut served = Served {
            child,
            url: String::new(),
            runtime_file: self.path("pp.redb.serve.json"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            // Its own file: one a killed server left may be there first.
            let info = std::fs::read(&served.runtime_file)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
            if let Some(info) = info
                && info["pid"] == served.child.id()
            {
                served.url = info["url"].as_str().unwrap().to_string();
                return served;
            }
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("serve exited before listening: {status}");
            }
            assert!(std::time::Instant::now() < deadline, "serve did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Served {
    /// SIGTERM, as systemd stops it; waits for a clean exit.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "serve exited with {exit}");
        assert!(
            !self.runtime_file.exists(),
            "a clean shutdown removes the runtime file"
        );
    }

    /// SIGKILL: the runtime file stays behind, stale.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP call to a test server (the CLI under test makes its own).
pub fn http(method: &str, url: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        reqwest::Client::new()
            .request(method, url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}
