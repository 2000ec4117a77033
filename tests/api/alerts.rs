//! Incident alerts through the real server: six generated weeks, quiet or
//! with one day of 120 extra angry outage chats; the alert's conversations,
//! acknowledging it, raising it once, and the `insight.alert` webhook in
//! each format.

use powerpulse::config::{DigestSchedule, Settings, WebhookFormat};
use serde_json::Value;

use crate::helpers::*;
use crate::notify::{Receiver, app_with_webhook, hmac_hex};

/// Six weeks of chats, ~150 a weekday, as CSV; `incident`: a day (from 0)
/// with 120 more angry outage chats.
fn six_weeks(seed: u64, incident: Option<usize>) -> Vec<u8> {
    let incidents: Vec<(usize, usize)> = incident.map(|d| (d, 120)).into_iter().collect();
    let mut out = Vec::new();
    crate::synth::write_csv(
        &crate::synth::generate_weeks(6, 150, seed, &incidents),
        &mut out,
    )
    .unwrap();
    out
}

async fn upload(app: &TestApp, name: &str, body: Vec<u8>) {
    let r = app.upload_raw(name, body, true).await;
    assert_eq!(r.status(), 200);
}

/// Alert checks done so far (`/metrics`).
async fn checks(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("powerpulse_alert_checks_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Waits until `n` alert checks are done; answers how many are.
async fn checked(app: &TestApp, n: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let done = checks(app).await;
        if done >= n {
            return done;
        }
        assert!(std::time::Instant::now() < deadline, "{done} checks of {n}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Uploads a file and waits for the alert check its completion asks for
/// (after the one `serve` makes when it starts).
async fn upload_checked(app: &TestApp, name: &str, body: Vec<u8>) {
    let before = checked(app, 1).await;
    upload(app, name, body).await;
    checked(app, before + 1).await;
}

/// Polls until `GET /api/alerts` lists at least `n` alerts (the check runs
/// right after the upload completes, beside its answer).
async fn alerts_at_least(app: &TestApp, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let alerts = app.get_json("/api/alerts").await["alerts"]
            .as_array()
            .unwrap()
            .clone();
        if alerts.len() >= n {
            return alerts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} alerts",
            alerts.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_weeks_raise_nothing() {
    let app = spawn_app();
    upload_checked(&app, "quiet.csv", six_weeks(11, None)).await;
    let insights = app.get_json("/api/insights").await;
    assert!(insights["conversations"].as_u64().unwrap() > 4000);
    assert_eq!(
        app.get_json("/api/alerts").await["alerts"],
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_incident_is_raised_once_links_to_its_conversations_and_is_acknowledged() {
    let receiver = Receiver::start(&[]);
    let app = app_with_webhook(&receiver, Some("s3cret"), |s: &mut Settings| {
        s.notify.dashboard_url = Some("https://pp.example".into());
    });
    // Day 31: Wednesday 2 April 2026.
    upload(&app, "six-weeks.csv", six_weeks(5, Some(31))).await;
    let alerts = alerts_at_least(&app, 3).await;
    let outage: Vec<&Value> = alerts.iter().filter(|a| a["topic"] == "outage").collect();
    let kinds: Vec<&str> = outage.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["volume", "negative_share", "satisfaction"],
        "{alerts:#?}"
    );
    assert!(
        alerts.iter().all(|a| a["date"] == "2026-04-02"),
        "nothing on other days: {alerts:#?}"
    );
    let volume = outage[0];
    assert!(volume["value"].as_f64().unwrap() > 3.0 * volume["baseline"].as_f64().unwrap());
    let share = outage[1];
    assert!(share["value"].as_f64().unwrap() > 0.8, "{share}");

    // Its conversations: the drill-down of that day and topic, as many as the insights count.
    let n = volume["conversations"].as_u64().unwrap();
    let listed = app
        .get_json("/api/conversations?from=2026-04-02&to=2026-04-02&topic=outage&limit=1")
        .await;
    assert_eq!(listed["total"].as_u64().unwrap(), n);
    let day = app
        .get_json("/api/insights?from=2026-04-02&to=2026-04-02&topic=outage")
        .await;
    assert_eq!(day["conversations"].as_u64().unwrap(), n);

    // Sent as signed insight.alert webhooks, linking to them.
    let got = receiver.wait_for(1 + alerts.len());
    let hooks: Vec<_> = got
        .iter()
        .filter(|h| h.headers["x-powerpulse-event"] == "insight.alert")
        .collect();
    assert_eq!(hooks.len(), alerts.len());
    for hook in &hooks {
        assert_eq!(
            hook.headers["x-powerpulse-signature"],
            format!("sha256={}", hmac_hex("s3cret", &hook.body))
        );
    }
    let sent = hooks
        .iter()
        .map(|h| h.json())
        .find(|e| e["alert"]["id"] == volume["id"])
        .unwrap();
    assert_eq!(sent["alert"]["kind"], "volume");
    assert_eq!(
        sent["url"],
        "https://pp.example/#conversations?from=2026-04-02&to=2026-04-02&topic=outage"
    );

    // Raised once: another upload's check, which judges the same days, adds nothing.
    upload_checked(&app, "more.csv", export_csv(20, 99)).await;
    let again = app.get_json("/api/alerts").await["alerts"].clone();
    assert_eq!(again.as_array().unwrap().len(), alerts.len());

    // Acknowledged: no longer open, still listed.
    let id = volume["id"].as_str().unwrap();
    let r = app
        .request(reqwest::Method::POST, &format!("/api/alerts/{id}/ack"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let acked: Value = r.json().await.unwrap();
    assert_eq!(acked["acknowledged"], true);
    assert!(acked["acknowledged_at"].is_string());
    let open = app.get_json("/api/alerts?open=true").await["alerts"].clone();
    assert_eq!(open.as_array().unwrap().len(), alerts.len() - 1);
    assert!(open.as_array().unwrap().iter().all(|a| a["id"] != id));
    let in_range = app
        .get_json("/api/alerts?from=2026-04-02&to=2026-04-02")
        .await["alerts"]
        .clone();
    assert_eq!(in_range.as_array().unwrap().len(), alerts.len());
    assert_eq!(
        app.get_json("/api/alerts?from=2026-04-03").await["alerts"],
        serde_json::json!([])
    );
    assert_error(
        app.request(reqwest::Method::POST, "/api/alerts/0123456789abcdef/ack")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_error(
        app.request(reqwest::Method::POST, "/api/alerts/nope/ack")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_go_to_slack_and_teams_as_their_messages() {
    for (format, check) in [
        (WebhookFormat::Slack, "slack"),
        (WebhookFormat::Teams, "teams"),
    ] {
        let receiver = Receiver::start(&[]);
        let app = app_with_webhook(&receiver, None, |s: &mut Settings| {
            s.notify.format = format;
        });
        upload(&app, "six-weeks.csv", six_weeks(9, Some(24))).await;
        let alerts = alerts_at_least(&app, 1).await;
        let got = receiver.wait_for(1 + alerts.len());
        let alert = got
            .iter()
            .find(|h| h.headers["x-powerpulse-event"] == "insight.alert")
            .unwrap()
            .json();
        let upload = got
            .iter()
            .find(|h| h.headers["x-powerpulse-event"] == "upload.completed")
            .unwrap()
            .json();
        match check {
            "slack" => {
                assert!(
                    alert["text"]
                        .as_str()
                        .unwrap()
                        .starts_with("PowerPulse alert:"),
                    "{alert}"
                );
                assert_eq!(alert["blocks"][0]["type"], "header");
                assert!(upload["text"].as_str().unwrap().contains("six-weeks.csv"));
            }
            _ => {
                assert_eq!(alert["type"], "message");
                let card = &alert["attachments"][0]["content"];
                assert_eq!(card["type"], "AdaptiveCard");
                assert!(
                    card["body"][0]["text"]
                        .as_str()
                        .unwrap()
                        .starts_with("PowerPulse alert:")
                );
                assert_eq!(
                    upload["attachments"][0]["contentType"],
                    "application/vnd.microsoft.card.adaptive"
                );
            }
        }
    }
}

/// A daily digest due at 00:00 UTC is due at every start (about the day
/// before): `serve` sends it when it starts, and started again the same
/// day, knows that period's went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_digest_goes_at_start_once_per_period() {
    let receiver = Receiver::start(&[]);
    let mut settings = Settings::default();
    settings.notify.webhook_url = Some(receiver.url.clone());
    settings.notify.backoff_ms = 20;
    settings.notify.digest = DigestSchedule::Daily;
    settings.notify.digest_hour = 0;
    let app = spawn_with(Options {
        settings: settings.clone(),
        ..Default::default()
    });
    let got = receiver.wait_for(1);
    assert_eq!(got[0].headers["x-powerpulse-event"], "insight.digest");
    let digest = got[0].json();
    let yesterday = (chrono::Utc::now().date_naive() - chrono::Days::new(1))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(digest["period"]["schedule"], "daily");
    assert_eq!(digest["period"]["from"], yesterday.as_str());
    assert_eq!(digest["period"]["to"], yesterday.as_str());
    assert_eq!(digest["conversations"], 0);
    assert_eq!(digest["open_alerts"], 0);
    // Started again: the first alert check, which the alerts' actor takes
    // after the digest's turn, then a shutdown that flushes the webhooks.
    let app = spawn_with(Options {
        settings,
        dir: Some(app.stop()),
        ..Default::default()
    });
    checked(&app, 1).await;
    drop(app.stop());
    let digests = receiver
        .received()
        .iter()
        .filter(|h| h.headers["x-powerpulse-event"] == "insight.digest")
        .count();
    assert_eq!(digests, 1, "that day's digest went already");
}
