//! The dashboard in a real headless Chromium (Debian's `chromium` and
//! `chromedriver`, driven over WebDriver with fantoccini): upload through
//! the page, watch the bar reach 100%, read counts and a chart, open a
//! transcript, cancel a slow upload against the fake LLM server. Screenshots
//! land in `target/dashboard-screenshots/` (not committed).

#[path = "../../examples/support/synth.rs"]
mod synth;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_openai::{FakeConfig, FakeServer, Latency};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `powerpulse serve` on a free port; answers its base URL.
fn serve(db: &Path, extra_env: &[(&str, String)]) -> (Process, String) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_powerpulse"));
    command
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("POWERPULSE_DB", db)
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let child = Process(command.spawn().unwrap());
    wait_for_port(port);
    (child, format!("http://127.0.0.1:{port}"))
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn browser(profile: &Path) -> (Process, Client) {
    let port = free_port();
    let driver = Process(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port);
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1400,1000",
                     format!("--user-data-dir={}", profile.display())]
        }
    });
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromedriver session");
    (driver, client)
}

/// Evaluates `script` until it returns a truthy value.
async fn until(c: &Client, script: &str, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let v = c.execute(script, vec![]).await.unwrap();
        if !(v.is_null() || v == false || v == "" || v == 0) {
            return v;
        }
        if Instant::now() >= deadline {
            // What the page said went wrong, if anything.
            let shown = c
                .execute(
                    "return document.querySelector('#error').textContent",
                    vec![],
                )
                .await
                .unwrap_or_default();
            panic!("timed out waiting for {what}; the page's error box: {shown}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Picks `path` in the page's file input (once the page knows the caller
/// may upload: the panel shows for operators), which shows how it will be
/// read.
async fn preview_file(c: &Client, path: &str) {
    until(
        c,
        "return !document.querySelector('#upload-panel').hidden",
        "the upload panel",
    )
    .await;
    let input = c.find(Locator::Css("#file-input")).await.unwrap();
    input.send_keys(path).await.unwrap();
    until(
        c,
        "const f = document.querySelector('#preview'); \
         return !f.hidden && document.querySelector('#preview-title').textContent",
        "the preview",
    )
    .await;
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Picks `path` and starts its upload from the preview.
async fn choose_file(c: &Client, path: &str) {
    preview_file(c, path).await;
    click(c, "#preview-start").await;
}

/// The text of the first element matching `css`.
async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots().join(name), png).unwrap();
}

fn chromium_available() -> bool {
    let ok = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ok("chromedriver") && Path::new("/usr/bin/chromium").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    if !chromium_available() {
        // CI installs them (.ci/run); elsewhere say so loudly.
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver are required in CI"
        );
        eprintln!(
            "SKIPPED: install Debian's chromium and chromium-driver to run the dashboard test"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = serve(&dir.path().join("dash.redb"), &[]);
    let (_driver, c) = browser(&dir.path().join("profile")).await;
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample_export.csv");

    // Upload through the file picker: first a preview of how it is read,
    // then the live bar reaches 100%.
    c.goto(&base).await.unwrap();
    preview_file(&c, sample.to_str().unwrap()).await;
    let title = text(&c, "#preview-title").await;
    assert!(title.ends_with("read as csv"), "{title}");
    assert!(
        text(&c, "#preview-counts")
            .await
            .starts_with("200 conversations"),
        "the preview counts the whole file"
    );
    c.execute(
        "document.querySelector('#preview').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    shot(&c, "0-preview.png").await;
    click(&c, "#preview-start").await;
    until(
        &c,
        "const p = document.querySelector('[data-upload] progress'); return p && p.value === 100",
        "the bar to reach 100%",
    )
    .await;
    until(
        &c,
        "return document.querySelector('[data-upload] .stage').textContent === 'completed'",
        "completed",
    )
    .await;
    let conversations = text(&c, "[data-upload] [data-stat='conversations'] b").await;
    assert_eq!(conversations, "200");
    let filtered = c
        .find(Locator::Css(
            "[data-upload] [data-stat='autoresponses filtered'] b",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(filtered.parse::<u32>().unwrap() > 0);
    shot(&c, "1-upload-complete.png").await;

    // Past uploads → details with charts.
    until(
        &c,
        "return document.querySelectorAll('#uploads tbody tr').length",
        "the uploads list",
    )
    .await;
    c.find(Locator::Css("#uploads tbody tr"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "return document.querySelectorAll('#chart-sentiment svg rect').length === 3",
        "the sentiment chart",
    )
    .await;
    let label = c
        .find(Locator::Css("#chart-sentiment svg"))
        .await
        .unwrap()
        .attr("aria-label")
        .await
        .unwrap()
        .unwrap();
    assert!(
        label.contains("positive:") && label.contains("negative:"),
        "{label}"
    );
    until(
        &c,
        "return document.querySelectorAll('#chart-satisfaction svg rect').length === 5",
        "the satisfaction histogram",
    )
    .await;
    until(
        &c,
        "return document.querySelector('#chart-time svg path')",
        "sentiment over time",
    )
    .await;
    until(
        &c,
        "return document.querySelectorAll('#conversations tbody tr').length === 25",
        "the first page",
    )
    .await;
    shot(&c, "2-details.png").await;

    // Filters and paging.
    c.execute(
        "const s = document.querySelector('#filters [name=sentiment]'); s.value = 'negative'; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await
    .unwrap();
    until(
        &c,
        "const cells = [...document.querySelectorAll('#conversations tbody td:nth-child(2)')]; return cells.length > 0 && cells.every(td => td.textContent.startsWith('negative'))",
        "the negative filter",
    )
    .await;

    // A transcript with its autoresponses greyed and labelled.
    c.execute(
        "const s = document.querySelector('#filters [name=sentiment]'); s.value = ''; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await
    .unwrap();
    // The filtered page may have 25 rows too: wait for the unfiltered one
    // to replace it, or the rows below go stale under the clicks.
    until(
        &c,
        "const cells = [...document.querySelectorAll('#conversations tbody td:nth-child(2)')]; return cells.length === 25 && cells.some(td => !td.textContent.startsWith('negative'))",
        "the unfiltered page",
    )
    .await;
    let rows = c
        .find_all(Locator::Css("#conversations tbody tr"))
        .await
        .unwrap();
    let mut opened_autoresponse = false;
    for row in rows.iter().take(10) {
        row.click().await.unwrap();
        until(
            &c,
            "return document.querySelectorAll('#transcript .msg').length",
            "a transcript",
        )
        .await;
        let auto: Value = c
            .execute(
                "return document.querySelectorAll('#transcript .msg.autoresponse').length",
                vec![],
            )
            .await
            .unwrap();
        if auto.as_u64().unwrap_or(0) > 0 {
            let text = text(&c, "#transcript .msg.autoresponse .who").await;
            assert!(text.contains("autoresponse"), "{text}");
            opened_autoresponse = true;
            break;
        }
    }
    assert!(
        opened_autoresponse,
        "one of the first conversations has a bot greeting"
    );
    let analysis = text(&c, "#transcript .analysis").await;
    assert!(analysis.contains("satisfaction"), "{analysis}");
    shot(&c, "3-transcript.png").await;

    // Phone width: usable, no sideways scrolling of the page.
    c.set_window_size(390, 844).await.unwrap();
    let fits: Value = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, true, "the page fits a phone screen");
    shot(&c, "4-phone.png").await;
    c.set_window_size(1400, 1000).await.unwrap();

    // Insights across uploads: charts over time, sortable tables with bars.
    until(
        &c,
        "return document.querySelector('#insight-numbers b')?.textContent === '200'",
        "the insights to count the upload",
    )
    .await;
    until(
        &c,
        "return document.querySelector('#chart-insight-satisfaction svg path') && document.querySelectorAll('#chart-insight-sentiment svg rect').length >= 3",
        "the insights charts",
    )
    .await;
    let topics: Value = c
        .execute(
            "return [...document.querySelectorAll('#insight-topics tbody tr')].map(r => r.dataset.name)",
            vec![],
        )
        .await
        .unwrap();
    let topics: Vec<&str> = topics
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in ["outage", "billing", "meter", "payment"] {
        assert!(topics.contains(&t), "{t} in {topics:?}");
    }
    let counts = "return [...document.querySelectorAll('#insight-agents tbody td:nth-child(2)')].map(td => Number(td.textContent.replace(/,/g, '')))";
    let before: Vec<u64> =
        serde_json::from_value(c.execute(counts, vec![]).await.unwrap()).unwrap();
    assert!(
        before.windows(2).all(|w| w[0] >= w[1]),
        "largest first: {before:?}"
    );
    assert_eq!(before.iter().sum::<u64>(), 200);
    c.find(Locator::Css("#insight-agents th[data-column='0']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let after: Vec<u64> = serde_json::from_value(c.execute(counts, vec![]).await.unwrap()).unwrap();
    assert!(
        after.windows(2).all(|w| w[0] <= w[1]),
        "sorted the other way: {after:?}"
    );
    let sort = text(&c, "#insight-agents th[aria-sort='ascending']").await;
    assert!(sort.starts_with("Conversations"), "{sort}");
    // Filtering by the first agent counts only theirs.
    let (agent, theirs): (String, u64) = serde_json::from_value(
        c.execute(
            "const r = document.querySelector('#insight-agents tbody tr'); return [r.dataset.name, Number(r.children[1].textContent.replace(/,/g, ''))]",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    c.execute(
        "const s = document.querySelector('#insight-filters [name=agent]'); s.value = arguments[0]; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![json!(agent)],
    )
    .await
    .unwrap();
    until(
        &c,
        &format!("return document.querySelector('#insight-numbers b').textContent === '{theirs}' && document.querySelectorAll('#insight-agents tbody tr').length === 1"),
        "the agent filter",
    )
    .await;
    shot(&c, "4b-insights.png").await;
    c.execute(
        "const s = document.querySelector('#insight-filters [name=agent]'); s.value = ''; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await
    .unwrap();
    until(
        &c,
        "return document.querySelector('#insight-numbers b').textContent === '200'",
        "every agent again",
    )
    .await;
    // A chart bar lists exactly the conversations it counts, across uploads.
    let (date, counted): (String, u64) = serde_json::from_value(
        c.execute(
            "const g = [...document.querySelectorAll('#chart-insight-sentiment g.day')].sort((a, b) => b.dataset.conversations - a.dataset.conversations)[0]; return [g.dataset.date, Number(g.dataset.conversations)]",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert!(
        counted > 25,
        "the busiest day has more than a page: {counted}"
    );
    c.find(Locator::Css(&format!(
        "#chart-insight-sentiment g.day[data-date='{date}']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    until(
        &c,
        &format!("const d = document.querySelector('#drill'); return !d.hidden && d.dataset.total === '{counted}' && document.querySelectorAll('#drill tbody tr').length === 25"),
        "the bar's conversations",
    )
    .await;
    let title = text(&c, "#drill-title").await;
    assert!(title.starts_with(&date), "{title}");
    // The rest of them, a page at a time.
    while c
        .execute(
            "return !document.querySelector('#drill-more').hidden",
            vec![],
        )
        .await
        .unwrap()
        == true
    {
        let shown: u64 = serde_json::from_value(
            c.execute(
                "return document.querySelectorAll('#drill tbody tr').length",
                vec![],
            )
            .await
            .unwrap(),
        )
        .unwrap();
        c.find(Locator::Css("#drill-more"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(
            &c,
            &format!("return document.querySelectorAll('#drill tbody tr').length > {shown}"),
            "the next page",
        )
        .await;
    }
    let dates: Vec<String> = serde_json::from_value(
        c.execute(
            "return [...document.querySelectorAll('#drill tbody tr td:first-child')].map(td => td.textContent)",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(dates.len() as u64, counted);
    assert!(dates.iter().all(|d| *d == date), "{dates:?}");
    // One of them opens with its transcript and result.
    c.find(Locator::Css("#drill tbody tr"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "const t = document.querySelector('#drill-transcript'); return !t.hidden && t.querySelectorAll('.msg').length && t.querySelector('.analysis').textContent.includes('satisfaction')",
        "the transcript",
    )
    .await;
    c.execute("document.querySelector('#drill').scrollIntoView()", vec![])
        .await
        .unwrap();
    shot(&c, "4c-drill-down.png").await;

    // A topic's row lists its conversations; one of them opens its upload.
    let meter: u64 = serde_json::from_value(
        c.execute(
            "return Number(document.querySelector(\"#insight-topics tbody tr[data-name='meter']\").children[1].textContent.replace(/,/g, ''))",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    c.find(Locator::Css("#insight-topics tbody tr[data-name='meter']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        &format!("return document.querySelector('#drill-title').textContent.startsWith('Topic meter') && document.querySelector('#drill').dataset.total === '{meter}'"),
        "the topic's conversations",
    )
    .await;
    c.find(Locator::Css("#drill tbody tr"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "return !document.querySelector('#drill-transcript').hidden",
        "the transcript",
    )
    .await;
    c.execute("document.querySelector('#drill').scrollIntoView()", vec![])
        .await
        .unwrap();
    shot(&c, "4d-topic-conversations.png").await;
    c.find(Locator::Css("#drill-transcript button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "return !document.querySelector('#details').hidden && !document.querySelector('#transcript').hidden && document.querySelector('#transcript h3').textContent === document.querySelector('#drill-transcript h3').textContent",
        "the upload with the transcript",
    )
    .await;

    // A search: every word, the matched ones marked, in the drill-down's list.
    c.execute(
        "const q = document.querySelector('#search [name=q]'); q.value = 'bill corrected'; document.querySelector('#search button').click();",
        vec![],
    )
    .await
    .unwrap();
    until(
        &c,
        "const t = document.querySelector('#drill-title').textContent; return t.startsWith('Search') && document.querySelectorAll('#drill tbody tr').length > 0 && document.querySelectorAll('#drill tbody mark').length > 0",
        "the search's conversations",
    )
    .await;
    let marked: Vec<String> = serde_json::from_value(
        c.execute(
            "return [...document.querySelectorAll('#drill tbody mark')].map(m => m.textContent.toLowerCase())",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert!(
        marked
            .iter()
            .all(|m| m.starts_with("bill") || m == "corrected"),
        "{marked:?}"
    );
    c.execute("document.querySelector('#drill').scrollIntoView()", vec![])
        .await
        .unwrap();
    shot(&c, "4e-search.png").await;

    // A bad file gets a clear message.
    let bad = dir.path().join("broken.xlsx");
    std::fs::write(&bad, "not a workbook").unwrap();
    c.find(Locator::Css("#file-input"))
        .await
        .unwrap()
        .send_keys(bad.to_str().unwrap())
        .await
        .unwrap();
    let message = until(
        &c,
        "const e = document.querySelector('#error'); return !e.hidden && e.textContent",
        "an error message",
    )
    .await;
    assert!(message.as_str().unwrap().contains("XLSX"), "{message}");

    // A WhatsApp chat names nobody's role: the preview says the roles are a
    // guess; the operator ticks the business side, checks again, uploads.
    let chat = dir.path().join("chat.txt");
    std::fs::write(
        &chat,
        "05/04/2024, 10:00 - Hari: Voltage is very low in Butwal, nothing works\n\
         05/04/2024, 10:05 - Desk: Sorry, we are checking the feeder now.\n\
         05/04/2024, 11:00 - Hari: Fixed, thank you!\n",
    )
    .unwrap();
    preview_file(&c, chat.to_str().unwrap()).await;
    assert!(
        text(&c, "#preview-title")
            .await
            .ends_with("read as whatsapp")
    );
    assert!(text(&c, "#preview-counts").await.contains("is a guess"));
    // The first writer was taken for the customer; say Desk is the business.
    c.execute(
        "for (const b of document.querySelectorAll('#preview input[data-sender]')) \
           b.checked = b.dataset.sender === 'Desk';",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "#preview-check").await;
    until(
        &c,
        "return !document.querySelector('#preview-counts').textContent.includes('guess')",
        "the preview with the operator's business side",
    )
    .await;
    c.execute(
        "document.querySelector('#preview').scrollIntoView()",
        vec![],
    )
    .await
    .unwrap();
    shot(&c, "4-preview-corrected.png").await;
    click(&c, "#preview-start").await;
    until(
        &c,
        "return [...document.querySelectorAll('[data-upload] .stage')].some(s => s.textContent === 'completed' \
           && s.closest('[data-upload]').textContent.includes('chat.txt'))",
        "the chat's upload",
    )
    .await;
    // Read back through the page's own origin.
    let get = |path: String| {
        let c = &c;
        async move {
            let script = "const x = new XMLHttpRequest(); x.open('GET', arguments[0], false); \
                          x.send(); return JSON.parse(x.responseText);";
            c.execute(script, vec![json!(path)]).await.unwrap()
        }
    };
    let uploads = get("/api/uploads".into()).await;
    let id = uploads
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["filename"] == "chat.txt")
        .expect("the chat's upload")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let conversation = get(format!("/api/uploads/{id}/conversations/chat")).await;
    let roles: Vec<&str> = conversation["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["customer", "agent", "customer"], "{conversation}");

    // Six weeks with an incident: the banner names it, lists its
    // conversations, and goes once acknowledged.
    let (_alert_server, alert_base) = serve(&dir.path().join("alerts.redb"), &[]);
    let weeks = dir.path().join("six-weeks.csv");
    synth::write_csv(
        &synth::generate_weeks(6, 150, 5, &[(31, 120)]),
        std::fs::File::create(&weeks).unwrap(),
    )
    .unwrap();
    c.goto(&alert_base).await.unwrap();
    choose_file(&c, weeks.to_str().unwrap()).await;
    until(
        &c,
        "return document.querySelector('[data-upload] .stage')?.textContent === 'completed'",
        "the six weeks",
    )
    .await;
    // The page reloads the insights (and the alerts) when the upload ends;
    // the check runs beside it: reload until the banner is there.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        c.goto(&alert_base).await.unwrap();
        let shown = c
            .execute(
                "await new Promise(r => setTimeout(r, 300)); return !document.querySelector('#alerts').hidden",
                vec![],
            )
            .await
            .unwrap();
        if shown == true {
            break;
        }
        assert!(Instant::now() < deadline, "no alert banner");
    }
    let banner = text(&c, "#alerts").await;
    assert!(
        banner.contains("2026-04-02") && banner.contains("Topic outage"),
        "{banner}"
    );
    shot(&c, "4f-alert-banner.png").await;
    let (id, conversations): (String, u64) = serde_json::from_value(
        c.execute(
            "const li = [...document.querySelectorAll('#alerts li[data-alert]')].find(l => l.textContent.includes('Topic outage: more conversations')); return [li.dataset.alert, Number(li.querySelector('button.show').textContent.replace(/[^0-9]/g, ''))]",
            vec![],
        )
        .await
        .unwrap(),
    )
    .unwrap();
    c.find(Locator::Css(&format!(
        "#alerts li[data-alert='{id}'] button.show"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    until(
        &c,
        &format!("const d = document.querySelector('#drill'); return !d.hidden && d.dataset.total === '{conversations}' && [...document.querySelectorAll('#drill tbody td:first-child')].every(td => td.textContent === '2026-04-02')"),
        "the alert's conversations",
    )
    .await;
    c.execute("document.querySelector('#drill').scrollIntoView()", vec![])
        .await
        .unwrap();
    shot(&c, "4g-alert-conversations.png").await;
    c.find(Locator::Css(&format!(
        "#alerts li[data-alert='{id}'] button.ack"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    until(
        &c,
        &format!("return !document.querySelector(\"#alerts li[data-alert='{id}']\")"),
        "the acknowledged alert to go",
    )
    .await;
    // A link to conversations, as an alert's webhook carries one.
    c.goto(&format!(
        "{alert_base}/#conversations?from=2026-04-02&to=2026-04-02&topic=outage"
    ))
    .await
    .unwrap();
    until(
        &c,
        &format!("return document.querySelector('#drill').dataset.total === '{conversations}'"),
        "the linked conversations",
    )
    .await;

    // Cancel a slow upload against the fake LLM server.
    let fake = FakeServer::start(FakeConfig {
        latency: Latency::Fixed(Duration::from_millis(250)),
        ..Default::default()
    })
    .unwrap();
    let (_llm_server, llm_base) = serve(
        &dir.path().join("llm.redb"),
        &[
            ("OPENAI_API_KEY", "sk-dashboard".to_string()),
            ("OPENAI_BASE_URL", fake.base_url()),
            ("POWERPULSE__ANALYZER__CONCURRENCY", "2".to_string()),
        ],
    );
    let slow = dir.path().join("slow.csv");
    synth::write_csv(
        &synth::generate(300, 8),
        std::fs::File::create(&slow).unwrap(),
    )
    .unwrap();
    c.goto(&llm_base).await.unwrap();
    choose_file(&c, slow.to_str().unwrap()).await;
    until(
        &c,
        "const p = document.querySelector('[data-upload] progress'); return p && p.value > 0",
        "analysis to start",
    )
    .await;
    let requests = text(&c, "[data-upload] [data-stat='LLM requests'] b").await;
    assert!(requests.replace(',', "").parse::<u64>().unwrap() > 0);
    c.find(Locator::Css("[data-upload] .cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "return document.querySelector('[data-upload] .stage').textContent === 'cancelled'",
        "cancelled",
    )
    .await;
    shot(&c, "5-cancelled.png").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = fake.stats().requests;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.stats().requests, after, "LLM traffic stopped");
    assert!(after < 300);

    c.close().await.unwrap();
}

/// What the page shows a viewer and an admin: the same server, two tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_each_role_only_what_it_may_do() {
    if !chromium_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver are required in CI"
        );
        eprintln!(
            "SKIPPED: install Debian's chromium and chromium-driver to run the dashboard test"
        );
        return;
    }
    use powerpulse::access::TokenHash;
    let (viewer, admin) = ("pp_dashboard-viewer", "pp_dashboard-admin");
    let tokens = format!(
        "[{{name = \"vera\", role = \"viewer\", hash = \"{}\"}}, \
          {{name = \"ada\", role = \"admin\", hash = \"{}\"}}]",
        TokenHash::of(viewer),
        TokenHash::of(admin)
    );
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = serve(
        &dir.path().join("roles.redb"),
        &[("POWERPULSE__SERVER__TOKENS", tokens)],
    );
    let (_driver, c) = browser(&dir.path().join("profile")).await;
    // Signs in as the page does after asking: the token in sessionStorage
    // (set from a page of this origin that asks nothing).
    let sign_in = async |token: &str| {
        c.goto(&format!("{base}/healthz")).await.unwrap();
        c.execute(
            "sessionStorage.setItem('powerpulse-token', arguments[0])",
            vec![json!(token)],
        )
        .await
        .unwrap();
        c.goto(&base).await.unwrap();
        until(&c, "return document.body.dataset.role", "who am I").await
    };

    assert_eq!(sign_in(admin).await, "admin");
    assert_eq!(text(&c, "#who").await, "ada · admin");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sample_export.csv");
    choose_file(&c, sample.to_str().unwrap()).await;
    until(
        &c,
        "const s = document.querySelector('[data-upload] .stage'); return s && s.textContent === 'completed'",
        "completed",
    )
    .await;
    c.find(Locator::Css("#audit-refresh"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "return [...document.querySelectorAll('#audit tbody td')].some((td) => td.textContent === 'upload')",
        "the upload in the audit log",
    )
    .await;
    shot(&c, "6-admin.png").await;

    assert_eq!(sign_in(viewer).await, "viewer");
    assert_eq!(text(&c, "#who").await, "vera · viewer");
    let hidden = c
        .execute(
            "return ['#upload-panel', '#audit'].map((s) => document.querySelector(s).hidden)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(hidden, json!([true, true]));
    // A transcript, with its personal data as placeholders.
    until(
        &c,
        "return document.querySelectorAll('#uploads tbody tr').length",
        "uploads",
    )
    .await;
    c.find(Locator::Css("#uploads tbody tr"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "return document.querySelectorAll('#conversations tbody tr').length",
        "conversations",
    )
    .await;
    c.find(Locator::Css("#conversations tbody tr"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let note = until(
        &c,
        "const n = document.querySelector('#transcript .note'); return n && n.textContent",
        "the redaction note",
    )
    .await;
    assert!(note.as_str().unwrap().contains("placeholders"), "{note}");
    shot(&c, "7-viewer.png").await;
}
