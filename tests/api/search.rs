//! Search through the real server: an upload is searchable the moment it
//! completes (a search first builds what is queued), in either script and
//! by phrase; a deleted upload is gone from it; the index outlives a
//! restart; a viewer sees the matching message redacted.

use powerpulse::access::{Credential, Role, TokenHash};
use powerpulse::config::Settings;
use serde_json::Value;

use crate::helpers::*;

/// Three conversations: an outage in Nepali, one in English with a phone
/// number, a bill.
fn chats() -> Vec<u8> {
    "conversation_id,sender,sender_name,message\n\
     n1,customer,Hari,\"नमस्ते, हाम्रो घरमा बिहानदेखि बत्ती छैन\"\n\
     n1,agent,Ram,हामी हेर्दैछौं\n\
     e1,customer,Sita Sharma,Power cut in Lalitpur again. Call me on 9841234567\n\
     e1,agent,Ram,\"Sorry Sita, a crew is on the way.\"\n\
     b1,customer,Gita,My bill is wrong this month\n\
     b1,agent,Ram,We corrected the bill.\n"
        .as_bytes()
        .to_vec()
}

async fn search_with(app: &TestApp, query: &[(&str, &str)]) -> Value {
    let url = reqwest::Url::parse_with_params(&app.url("/api/conversations"), query).unwrap();
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let r = app
        .request(reqwest::Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn search(app: &TestApp, q: &str) -> Value {
    search_with(app, &[("q", q)]).await
}

fn ids(page: &Value) -> Vec<&str> {
    let mut ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["conversation_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_searchable_once_completed_and_gone_once_deleted() {
    let app = spawn_app();
    let r = app.upload_raw("chats.csv", chats(), true).await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Romanised Nepali finds Devanagari, at once: the search builds the index first.
    let found = search(&app, "batti chaina").await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(ids(&found), ["n1"]);
    let m = &found["items"][0]["match"];
    assert_eq!(m["source"], "message");
    assert_eq!(m["index"], 0);
    let chars: Vec<char> = m["text"].as_str().unwrap().chars().collect();
    let marked: Vec<String> = m["highlights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            chars[h[0].as_u64().unwrap() as usize..h[1].as_u64().unwrap() as usize]
                .iter()
                .collect()
        })
        .collect();
    assert_eq!(marked, ["बत्ती", "छैन"]);
    // A phrase within one message; words in any order.
    assert_eq!(ids(&search(&app, "\"power cut\"").await), ["e1"]);
    assert_eq!(search(&app, "\"cut power\"").await["total"], 0);
    assert_eq!(ids(&search(&app, "wrong bill").await), ["b1"]);
    assert_eq!(
        ids(&search(&app, "Ram").await),
        Vec::<&str>::new(),
        "sender names are not text"
    );
    // With the drill-down's filters.
    assert_eq!(
        ids(&search_with(&app, &[("q", "bill"), ("agent", "Ram")]).await),
        ["b1"]
    );
    assert_eq!(
        search_with(&app, &[("q", "bill"), ("agent", "Hari")]).await["total"],
        0
    );
    // No word in it: nothing found, not an error.
    assert_eq!(search(&app, "\"\" !!").await["total"], 0);

    // Kept across a restart.
    let dir = app.stop();
    let app = spawn_with(Options {
        dir: Some(dir),
        ..Default::default()
    });
    assert_eq!(ids(&search(&app, "lalitpur").await), ["e1"]);

    // Deleted: found nowhere.
    assert!(
        app.delete(&format!("/api/uploads/{id}"))
            .await
            .status()
            .is_success()
    );
    assert_eq!(search(&app, "lalitpur").await["total"], 0);
    assert_eq!(search(&app, "बत्ती").await["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_the_matching_message_redacted() {
    const VIEWER: &str = "pp_viewer-token";
    const ADMIN: &str = "pp_admin-token";
    let mut settings = Settings::default();
    settings.server.tokens = vec![
        Credential {
            name: "vera".into(),
            role: Role::Viewer,
            hash: TokenHash::of(VIEWER),
        },
        Credential {
            name: "ada".into(),
            role: Role::Admin,
            hash: TokenHash::of(ADMIN),
        },
    ];
    let app = spawn_with(Options {
        settings,
        token: Some(ADMIN.into()),
        ..Default::default()
    });
    assert_eq!(
        app.upload_raw("chats.csv", chats(), true).await.status(),
        200
    );
    let text = |page: &Value| {
        page["items"][0]["match"]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let admin = search(&app, "lalitpur").await;
    assert!(text(&admin).contains("9841234567"), "{admin}");
    let viewer: Value = app
        .client
        .get(app.url("/api/conversations?q=lalitpur"))
        .bearer_auth(VIEWER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(viewer["total"], 1);
    let shown = text(&viewer);
    assert!(
        !shown.contains("9841234567") && shown.contains("<PHONE_1>"),
        "{shown}"
    );
    assert!(
        shown.contains("Lalitpur"),
        "the matched word is still there: {shown}"
    );
    // Nor can a viewer learn which conversations hold a number by
    // searching for it; an admin can.
    assert_eq!(search(&app, "9841234567").await["total"], 1);
    for q in ["9841234567", "%2B977-9841234567", "ram%40example.com"] {
        let refused = app
            .client
            .get(app.url(&format!("/api/conversations?q={q}")))
            .bearer_auth(VIEWER)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{q}");
    }
}
