//! `spawn_app()`: the server on a port of its own, in an actix System on a
//! background thread, over a temporary database.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use powerpulse::access::Keyring;
use powerpulse::analyze::Analyzer;
use powerpulse::config::Settings;
use powerpulse::engine::Engine;
use serde_json::Value;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    pub token: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

#[derive(Default)]
pub struct Options {
    pub token: Option<String>,
    pub settings: Settings,
    pub analyzer: Option<Analyzer>,
    /// A directory prepared beforehand (its `api.redb` is served); a fresh one by default.
    pub dir: Option<tempfile::TempDir>,
}

pub fn spawn_app() -> TestApp {
    spawn_with(Options::default())
}

pub fn spawn_with(options: Options) -> TestApp {
    let dir = options.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let mut settings = options.settings;
    settings.storage.path = dir.path().join("api.redb");
    let analyzer = options.analyzer.unwrap_or_else(Analyzer::lexicon);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let keyring = Keyring::new(options.token.as_deref(), &settings.server.tokens);
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let engine = Engine::start(settings, analyzer).map_err(std::io::Error::other)?;
            powerpulse::http::serve(engine, listener, keyring, async {
                let _ = rx.await;
            })
            .await
        })
    });
    // The client is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = TestApp {
        address,
        client: reqwest::Client::new(),
        dir,
        token: options.token,
        shutdown: Some(tx),
        thread: Some(thread),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(app.address.trim_start_matches("http://")).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("api.redb")
    }

    /// A request with the token, when the app has one.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.auth(self.client.request(method, self.url(path)))
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.address.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.auth(self.client.get(self.url(path)))
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.auth(self.client.delete(self.url(path)))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Raw-body upload (as the dashboard sends it: a non-simple content type).
    pub async fn upload_raw(&self, filename: &str, body: Vec<u8>, wait: bool) -> reqwest::Response {
        let url = self.url(&format!("/api/upload?filename={filename}&wait={wait}"));
        self.auth(self.client.post(url))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Multipart upload.
    pub async fn upload_form(&self, filename: &str, body: Vec<u8>) -> reqwest::Response {
        let part = reqwest::multipart::Part::bytes(body).file_name(filename.to_string());
        let form = reqwest::multipart::Form::new().part("file", part);
        self.auth(self.client.post(self.url("/api/upload")))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Polls progress until the upload reaches a final stage.
    pub async fn wait_done(&self, upload_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let p = self.get_json(&format!("/api/progress/{upload_id}")).await;
            if ["completed", "failed", "cancelled"].contains(&p["stage"].as_str().unwrap()) {
                return p;
            }
            assert!(Instant::now() < deadline, "upload never finished: {p}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the server as SIGTERM would, and waits for it.
    pub fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap().unwrap();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A synthetic export of `n` conversations, as CSV bytes.
pub fn export_csv(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    crate::synth::write_csv(&crate::synth::generate(n, seed), &mut out).unwrap();
    out
}

/// Asserts a JSON error body with the given status.
pub async fn assert_error(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "errors are JSON"
    );
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// The app over an OpenAI analyzer pointed at `server`: one call at a time,
/// unless `settings_fn` says otherwise.
pub fn llm_app(
    server: &fake_openai::FakeServer,
    settings_fn: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = Settings::default();
    settings.analyzer.concurrency = 1;
    settings.analyzer.batch_size = 1;
    settings.analyzer.openai.base_url = server.base_url();
    settings_fn(&mut settings);
    let analyzer = powerpulse::analyze::OpenAiAnalyzer::with_key(
        &settings.analyzer,
        "sk-test".to_string().into(),
        &settings.topics,
    )
    .unwrap();
    spawn_with(Options {
        settings,
        analyzer: Some(Analyzer::OpenAi(analyzer)),
        ..Default::default()
    })
}

/// Reads an SSE stream to its end: the data of each `progress` event.
pub async fn read_events(r: reqwest::Response) -> Vec<Value> {
    use futures_util::StreamExt;
    let mut events = Vec::new();
    let mut buf = String::new();
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            assert!(event.starts_with("event: progress\n"), "{event}");
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap();
            events.push(serde_json::from_str(data).unwrap());
        }
    }
    events
}
