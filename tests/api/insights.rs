//! Agents, topics and languages in the summary, the listing and the export;
//! insights across uploads.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::helpers::*;

/// The synthetic export's agents.
const AGENTS: [&str; 6] = ["Sita", "Ram", "Anita", "Bikash", "Priya", "Suman"];

fn sum(rows: &Value, field: &str) -> u64 {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakdowns_filters_exports_and_insights_across_uploads() {
    let app = spawn_app();
    let file = export_csv(150, 14);
    let r = app.upload_raw("week.csv", file.clone(), true).await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();

    let summary = app.get_json(&format!("/api/uploads/{id}/summary")).await;
    let analysed = summary["analyzed"].as_u64().unwrap()
        + summary["skipped_already_processed"].as_u64().unwrap();
    assert_eq!(analysed, 150);
    for breakdown in ["agents", "topics", "languages"] {
        assert_eq!(
            sum(&summary[breakdown], "conversations"),
            150,
            "{breakdown}"
        );
    }
    let agents = summary["agents"].as_array().unwrap();
    assert!(agents.len() > 1);
    for a in agents {
        assert!(AGENTS.contains(&a["agent"].as_str().unwrap()), "{a}");
        let counts: u64 = ["positive", "neutral", "negative"]
            .iter()
            .map(|k| a["sentiment"][k].as_u64().unwrap())
            .sum();
        assert_eq!(counts, a["conversations"].as_u64().unwrap());
        assert!((1.0..=5.0).contains(&a["average_satisfaction"].as_f64().unwrap()));
    }
    let topics: Vec<&str> = summary["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap())
        .collect();
    for t in ["outage", "billing", "meter", "connection", "payment"] {
        assert!(topics.contains(&t), "{t} in {topics:?}");
    }
    let languages: BTreeMap<&str, u64> = summary["languages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| Some((l["language"].as_str()?, l["conversations"].as_u64()?)))
        .collect();
    assert!(languages["en"] > languages["ne"], "{languages:?}");
    assert!(languages["ne"] > 0, "{languages:?}");

    // The listing filters by each; what it lists adds up to the breakdown.
    let first = &agents[0];
    let name = first["agent"].as_str().unwrap();
    let page = app
        .get_json(&format!(
            "/api/uploads/{id}/conversations?agent={name}&limit=500"
        ))
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len() as u64, first["conversations"].as_u64().unwrap());
    assert!(items.iter().all(|i| i["agent"] == name));
    let page = app
        .get_json(&format!(
            "/api/uploads/{id}/conversations?topic=meter&language=ne&limit=500"
        ))
        .await;
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| { i["analysis"]["topic"] == "meter" && i["language"] == "ne" })
    );

    // Every export row names them.
    let text = app
        .get(&format!("/api/uploads/{id}/export?format=csv"))
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (agent, topic, language) = (column("agent"), column("topic"), column("language"));
    for record in reader.records() {
        let record = record.unwrap();
        assert!(AGENTS.contains(&&record[agent]));
        assert!(!record[topic].is_empty() && !record[language].is_empty());
    }

    // Insights: every day of the upload, the same totals.
    let insights = app.get_json("/api/insights").await;
    assert_eq!(insights["conversations"], 150);
    assert_eq!(sum(&insights["days"], "conversations"), 150);
    assert_eq!(sum(&insights["agents"], "conversations"), 150);
    let first_day = insights["days"][0]["date"].as_str().unwrap().to_string();
    assert_eq!(
        first_day, "2026-03-02",
        "the synthetic chats start on Monday 2 March 2026"
    );

    // The same file again: its conversations count once.
    let r = app.upload_raw("week-again.csv", file, true).await;
    assert_eq!(r.status(), 200);
    let again = app.get_json("/api/insights").await;
    assert_eq!(again["conversations"], 150);
    assert_eq!(again, insights);

    // Filters: one agent, one topic, one day.
    let by_agent = app.get_json(&format!("/api/insights?agent={name}")).await;
    assert_eq!(by_agent["conversations"], first["conversations"]);
    assert_eq!(by_agent["agents"].as_array().unwrap().len(), 1);
    let by_topic = app.get_json("/api/insights?topic=outage").await;
    assert!(
        by_topic["topics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["topic"] == "outage")
    );
    let one_day = app
        .get_json(&format!("/api/insights?from={first_day}&to={first_day}"))
        .await;
    assert_eq!(one_day["days"].as_array().unwrap().len(), 1);
    assert_eq!(
        one_day["conversations"],
        insights["days"][0]["conversations"]
    );
    let none = app
        .get_json("/api/insights?from=2020-01-01&to=2020-12-31")
        .await;
    assert_eq!(none["conversations"], 0);
    assert!(none["days"].as_array().unwrap().is_empty());
    assert_error(app.get("/api/insights?from=2026-13-01").await, 400).await;
    // `from` after `to` is an empty range (a valid query, answered empty).
    let reversed = app
        .get_json("/api/insights?from=2026-03-02&to=2026-03-01")
        .await;
    assert_eq!(reversed["conversations"], 0);
    assert!(reversed["days"].as_array().unwrap().is_empty());

    // Deleting both uploads takes their conversations out.
    let uploads = app.get_json("/api/uploads").await;
    for u in uploads.as_array().unwrap() {
        let id = u["id"].as_str().unwrap();
        assert_eq!(
            app.delete(&format!("/api/uploads/{id}")).await.status(),
            204
        );
    }
    assert_eq!(app.get_json("/api/insights").await["conversations"], 0);
}

/// Every page of `/api/conversations?{query}`, `limit` at a time: the items
/// and the `total` of the first page.
async fn drill_all(app: &TestApp, query: &str, limit: usize) -> (Vec<Value>, u64) {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut total = None;
    loop {
        let mut path = format!("/api/conversations?{query}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let page = app.get_json(&path).await;
        total.get_or_insert(page["total"].as_u64().unwrap());
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return (items, total.unwrap()),
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_number_of_the_insights_leads_to_its_conversations() {
    let app = spawn_app();
    let file = export_csv(300, 21);
    for name in ["a.csv", "a-again.csv"] {
        let r = app.upload_raw(name, file.clone(), true).await;
        assert_eq!(r.status(), 200);
    }
    let insights = app.get_json("/api/insights").await;
    assert_eq!(insights["conversations"], 300, "the same file counts once");

    // Everything: each conversation once, newest day first, from the upload counted.
    let (all, total) = drill_all(&app, "", 500).await;
    assert_eq!((all.len(), total), (300, 300));
    let uploads: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|i| i["upload_id"].as_str().unwrap())
        .collect();
    assert_eq!(uploads.len(), 1, "one holder of each: {uploads:?}");
    let dates: Vec<&str> = all.iter().map(|i| i["date"].as_str().unwrap()).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first");
    assert!(
        all.iter()
            .all(|i| i["analysis"]["sentiment"]["label"].is_string())
    );

    // Each day, topic and agent: as many as the insights say, paged in sevens.
    for day in insights["days"].as_array().unwrap() {
        let date = day["date"].as_str().unwrap();
        let (items, total) = drill_all(&app, &format!("from={date}&to={date}"), 7).await;
        assert_eq!(
            items.len() as u64,
            day["conversations"].as_u64().unwrap(),
            "{date}"
        );
        assert_eq!(total, items.len() as u64);
        assert!(items.iter().all(|i| i["date"] == date));
        let negative = items
            .iter()
            .filter(|i| i["analysis"]["sentiment"]["label"] == "negative")
            .count() as u64;
        assert_eq!(negative, day["sentiment"]["negative"].as_u64().unwrap());
    }
    for (key, rows) in [
        ("topic", &insights["topics"]),
        ("agent", &insights["agents"]),
    ] {
        for row in rows.as_array().unwrap() {
            let name = row[key].as_str().unwrap();
            let (items, total) = drill_all(&app, &format!("{key}={name}"), 50).await;
            assert_eq!(
                total,
                row["conversations"].as_u64().unwrap(),
                "{key} {name}"
            );
            assert_eq!(items.len() as u64, total);
        }
    }
    // Filters beyond the insights' own are counted too.
    let (unhappy, total) = drill_all(&app, "sentiment=negative&satisfaction_max=2", 100).await;
    assert_eq!(unhappy.len() as u64, total);
    assert!(
        unhappy
            .iter()
            .all(|i| i["analysis"]["sentiment"]["label"] == "negative"
                && i["analysis"]["satisfaction"]["score"].as_u64().unwrap() <= 2)
    );
    let (nepali, _) = drill_all(&app, "language=ne&resolved=true", 100).await;
    assert!(!nepali.is_empty());
    assert!(
        nepali
            .iter()
            .all(|i| i["language"] == "ne" && i["analysis"]["resolved"] == true)
    );

    // A conversation opens with its transcript and result.
    let first = &all[0];
    let detail = app
        .get_json(&format!(
            "/api/uploads/{}/conversations/{}",
            first["upload_id"].as_str().unwrap(),
            first["conversation_id"].as_str().unwrap()
        ))
        .await;
    assert!(!detail["messages"].as_array().unwrap().is_empty());
    assert_eq!(detail["analysis"], first["analysis"]);

    // Bad requests are refused with the reason.
    assert_error(app.get("/api/conversations?cursor=nonsense").await, 400).await;
    assert_error(app.get("/api/conversations?satisfaction_max=9").await, 400).await;
    assert_error(app.get("/api/conversations?limit=0").await, 400).await;
    assert_error(app.get("/api/conversations?from=2026-02-30").await, 400).await;
}
