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
