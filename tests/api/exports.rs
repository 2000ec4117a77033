//! Real tools' exports through the HTTP API: a preview stores nothing, an
//! upload with the operator's choices reads the file as told.

use std::path::Path;

use serde_json::Value;

use crate::helpers::{TestApp, assert_error, spawn_app};

fn export(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/exports")
            .join(name),
    )
    .unwrap()
}

async fn post(app: &TestApp, path: &str, body: Vec<u8>) -> reqwest::Response {
    app.request(reqwest::Method::POST, path)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

const CHAT: &str = "05/04/2024, 10:00 - Hari: Voltage is very low in Butwal\n\
                    05/04/2024, 10:05 - Desk: Sorry, we are checking the feeder.\n\
                    05/04/2024, 11:00 - Hari: Fixed now, thanks\n";

#[actix_rt::test]
async fn a_preview_reads_without_storing_and_its_choices_carry_to_the_upload() {
    let app = spawn_app();
    let r = post(
        &app,
        "/api/preview?filename=WhatsApp%20Chat%20with%20Ram%20Sharma.txt",
        export("WhatsApp Chat with Ram Sharma.txt"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["format"], "whatsapp");
    assert_eq!(p["counts"]["conversations"], 1);
    assert_eq!(p["counts"]["agent_messages"], 3);
    assert_eq!(p["conversations"][0]["id"], "Ram Sharma");
    assert_eq!(p["senders"][1]["name"], "NEA Customer Care");
    assert_eq!(p["senders"][1]["role"], "agent");
    assert_eq!(
        app.get_json("/api/uploads").await,
        serde_json::json!([]),
        "a preview stores nothing"
    );

    // A chat nobody names: a guess, until the operator says who is who.
    let p: Value = post(&app, "/api/preview?filename=chat.txt", CHAT.into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["counts"]["guessed_roles"], 3);
    let p: Value = post(
        &app,
        "/api/preview?filename=chat.txt&agents=Desk",
        CHAT.into(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(p["counts"]["guessed_roles"], 0);
    assert_eq!(p["counts"]["agent_messages"], 1);

    let r = post(
        &app,
        "/api/upload?filename=chat.txt&agents=Desk&wait=true",
        CHAT.into(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let uploads = app.get_json("/api/uploads").await;
    let upload = &uploads[0];
    assert_eq!(upload["format"], "whatsapp");
    assert_eq!(upload["ingest"]["agents"], serde_json::json!(["Desk"]));
    let id = upload["id"].as_str().unwrap();
    let c = app
        .get_json(&format!("/api/uploads/{id}/conversations/chat"))
        .await;
    let roles: Vec<&str> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["customer", "agent", "customer"]);
}

#[actix_rt::test]
async fn a_zip_of_chats_uploads_and_bad_choices_are_refused() {
    let app = spawn_app();
    // A forced format the file is not: refused with the reader's message.
    let r = post(
        &app,
        "/api/preview?filename=chat.txt&format=zendesk",
        CHAT.into(),
    )
    .await;
    assert_error(r, 422).await;
    let r = post(
        &app,
        "/api/upload?filename=chat.txt&format=nope",
        CHAT.into(),
    )
    .await;
    assert_error(r, 400).await;
    // Several WhatsApp chats in one zip: one conversation each.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, body) in [
        (
            "WhatsApp Chat with Ram Sharma.txt",
            export("WhatsApp Chat with Ram Sharma.txt"),
        ),
        (
            "WhatsApp Chat with Hari.txt",
            CHAT.replace("Desk", "NEA Customer Care").into_bytes(),
        ),
    ] {
        zip.start_file(name, options).unwrap();
        std::io::Write::write_all(&mut zip, &body).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    let r = post(&app, "/api/upload?filename=chats.zip&wait=true", bytes).await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["conversations_processed"], 2, "{s}");
}
