//! Roles and the audit log against the real server: each role may do what
//! it may and is refused the rest (403, audited), a viewer reads
//! transcripts with personal data redacted, every operator and admin action
//! is in `GET /api/audit`, and the server proves the keys it holds.

use powerpulse::access::{Credential, Nonce, ProofKey, Role, TokenHash};
use powerpulse::config::Settings;
use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

const VIEWER: &str = "pp_viewer-token";
const OPERATOR: &str = "pp_operator-token";
const ADMIN: &str = "pp_admin-token";
const SERVER_TOKEN: &str = "chosen-by-hand";

fn credential(name: &str, role: Role, token: &str) -> Credential {
    Credential {
        name: name.into(),
        role,
        hash: TokenHash::of(token),
    }
}

/// A server with three named tokens and `server.token`.
fn app_with_roles() -> TestApp {
    let mut settings = Settings::default();
    settings.server.tokens = vec![
        credential("vera", Role::Viewer, VIEWER),
        credential("otto", Role::Operator, OPERATOR),
        credential("ada", Role::Admin, ADMIN),
    ];
    spawn_with(Options {
        settings,
        token: Some(SERVER_TOKEN.into()),
        ..Default::default()
    })
}

/// A conversation with a phone number, an e-mail address and the
/// customer's name in it.
fn personal_csv() -> Vec<u8> {
    b"conversation_id,sender,sender_name,message\n\
      c1,customer,Sita Sharma,My power is out since morning. Call me on 9841234567 or sita@example.com\n\
      c1,agent,Ram,Sorry Sita, a crew is on the way.\n\
      c1,customer,Sita Sharma,Thank you so much!\n"
        .to_vec()
}

async fn call(app: &TestApp, token: Option<&str>, method: Method, path: &str) -> reqwest::Response {
    let mut rb = app.client.request(method, app.url(path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    rb.send().await.unwrap()
}

async fn upload_as(app: &TestApp, token: &str, body: Vec<u8>, wait: bool) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/upload?filename=chats.csv&wait={wait}")))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let r = call(app, Some(ADMIN), Method::GET, &format!("/api/audit{query}")).await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_does_what_it_may_and_is_refused_the_rest() {
    let app = app_with_roles();
    // Who am I.
    for (token, name, role) in [
        (VIEWER, "vera", "viewer"),
        (OPERATOR, "otto", "operator"),
        (ADMIN, "ada", "admin"),
        (SERVER_TOKEN, "server.token", "admin"),
    ] {
        let me: Value = call(&app, Some(token), Method::GET, "/api/whoami")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(me["name"], name);
        assert_eq!(me["role"], role);
        assert_eq!(me["token_required"], true);
    }
    assert_error(
        call(&app, Some("pp_nobody"), Method::GET, "/api/whoami").await,
        401,
    )
    .await;
    assert_error(call(&app, None, Method::GET, "/api/uploads").await, 401).await;
    // Any token is told what is not there, or not served so.
    assert_error(
        call(&app, Some(VIEWER), Method::GET, "/api/nowhere").await,
        404,
    )
    .await;
    assert_error(
        call(&app, Some(VIEWER), Method::PUT, "/api/uploads").await,
        405,
    )
    .await;

    // A viewer may not upload; an operator may.
    let refused = upload_as(&app, VIEWER, personal_csv(), true).await;
    let e = assert_error(refused, 403).await;
    assert!(e["detail"].as_str().unwrap().contains("viewer"), "{e}");
    let r = upload_as(&app, OPERATOR, personal_csv(), true).await;
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    // So with an estimate.
    let estimate = async |token: &str| {
        app.client
            .post(app.url("/api/estimate?filename=chats.csv"))
            .bearer_auth(token)
            .header("content-type", "text/csv")
            .body(personal_csv())
            .send()
            .await
            .unwrap()
    };
    assert_error(estimate(VIEWER).await, 403).await;
    assert_eq!(estimate(OPERATOR).await.status(), 200);

    // Everyone reads results.
    for token in [VIEWER, OPERATOR, ADMIN] {
        for path in [
            "/api/uploads".to_string(),
            format!("/api/uploads/{id}/summary"),
            format!("/api/uploads/{id}/conversations"),
            format!("/api/uploads/{id}/export?format=csv"),
            "/api/insights".to_string(),
            "/metrics".to_string(),
        ] {
            assert_eq!(
                call(&app, Some(token), Method::GET, &path).await.status(),
                200,
                "{path}"
            );
        }
    }

    // Transcripts: whole for an operator, redacted for a viewer.
    let transcript = format!("/api/uploads/{id}/conversations/c1");
    let whole: Value = call(&app, Some(OPERATOR), Method::GET, &transcript)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(whole["redacted"], false);
    let text = whole["messages"].to_string();
    assert!(
        text.contains("9841234567") && text.contains("Sita Sharma"),
        "{text}"
    );
    let redacted: Value = call(&app, Some(VIEWER), Method::GET, &transcript)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(redacted["redacted"], true);
    let text = redacted["messages"].to_string();
    for personal in ["9841234567", "sita@example.com", "Sita", "Sharma"] {
        assert!(!text.contains(personal), "{personal} in {text}");
    }
    assert!(
        text.contains("<PHONE_1>") && text.contains("<EMAIL_1>"),
        "{text}"
    );
    assert_eq!(redacted["messages"].as_array().unwrap().len(), 3);
    assert_eq!(redacted["analysis"], whole["analysis"]);

    // Cancel and resume are operators'; delete, backup and the audit log admins'.
    let cancel = format!("/api/progress/{id}");
    assert_error(call(&app, Some(VIEWER), Method::DELETE, &cancel).await, 403).await;
    // (It has finished: the operator is let through, and told so.)
    assert_error(
        call(&app, Some(OPERATOR), Method::DELETE, &cancel).await,
        409,
    )
    .await;
    let resume = format!("/api/uploads/{id}/resume");
    assert_error(call(&app, Some(VIEWER), Method::POST, &resume).await, 403).await;
    assert_error(call(&app, Some(OPERATOR), Method::POST, &resume).await, 409).await;
    for token in [VIEWER, OPERATOR] {
        assert_error(
            call(&app, Some(token), Method::GET, "/api/backup").await,
            403,
        )
        .await;
        assert_error(
            call(&app, Some(token), Method::GET, "/api/audit").await,
            403,
        )
        .await;
        assert_error(
            call(
                &app,
                Some(token),
                Method::DELETE,
                &format!("/api/uploads/{id}"),
            )
            .await,
            403,
        )
        .await;
    }
    assert_eq!(
        call(&app, Some(ADMIN), Method::GET, "/api/backup")
            .await
            .status(),
        200
    );
    assert_eq!(
        call(
            &app,
            Some(SERVER_TOKEN),
            Method::DELETE,
            &format!("/api/uploads/{id}")
        )
        .await
        .status(),
        204
    );

    // The audit log: who did what, to which upload, newest first.
    let entries = audit(&app, "").await;
    let summary: Vec<(String, String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["who"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, u64)> = [
        ("server.token", "delete", 204),
        ("ada", "backup", 200),
        ("otto", "delete", 403),
        ("otto", "read_audit", 403),
        ("otto", "backup", 403),
        ("vera", "delete", 403),
        ("vera", "read_audit", 403),
        ("vera", "backup", 403),
        ("otto", "resume", 409),
        ("vera", "resume", 403),
        ("otto", "cancel", 409),
        ("vera", "cancel", 403),
        ("otto", "transcript", 200),
        ("otto", "estimate", 200),
        ("vera", "estimate", 403),
        ("otto", "upload", 200),
        ("vera", "upload", 403),
    ]
    .iter()
    .map(|(w, a, s)| (w.to_string(), a.to_string(), *s))
    .collect();
    // Newest first; the viewer's redacted read is not an operator's action.
    assert_eq!(summary, expected);
    let upload = entries
        .iter()
        .find(|e| e["action"] == "upload" && e["status"] == 200)
        .unwrap();
    assert_eq!(upload["upload_id"], id.as_str());
    assert_eq!(upload["target"], "chats.csv");
    assert_eq!(upload["role"], "operator");
    let read = entries
        .iter()
        .find(|e| e["action"] == "transcript")
        .unwrap();
    assert_eq!(read["upload_id"], id.as_str());
    assert_eq!(read["target"], "c1");

    // Filters, and the reading of the log is itself in it.
    let deletes = audit(&app, "?action=delete").await;
    assert_eq!(deletes.len(), 3);
    let otto = audit(&app, "?who=otto&limit=2").await;
    assert_eq!(otto.len(), 2);
    assert!(otto.iter().all(|e| e["who"] == "otto"));
    let on_upload = audit(&app, &format!("?upload_id={id}")).await;
    assert!(on_upload.iter().all(|e| e["upload_id"] == id.as_str()));
    assert!(on_upload.len() >= 8);
    // The four reads before this one (each is recorded once answered).
    assert_eq!(audit(&app, "?action=read_audit&who=ada").await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_everyone_is_the_anonymous_admin_and_still_audited() {
    let app = spawn_app();
    let me = app.get_json("/api/whoami").await;
    assert_eq!(me["name"], "anonymous");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["token_required"], false);
    let r = app.upload_raw("a.csv", export_csv(3, 1), true).await;
    assert_eq!(r.status(), 200);
    let page = app.get_json("/api/audit").await;
    let e = &page["items"][0];
    assert_eq!(e["who"], "anonymous");
    assert_eq!(e["action"], "upload");
    assert_eq!(e["target"], "a.csv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_proves_the_keys_it_holds_and_no_other() {
    let app = app_with_roles();
    let port = app.port();
    for token in [OPERATOR, SERVER_TOKEN] {
        let key = TokenHash::of(token).proof_key();
        let nonce = Nonce::generate();
        // Open: the client sends no token before the server has proven itself.
        let r = call(
            &app,
            None,
            Method::GET,
            &format!("/api/proof?nonce={nonce}&key={}", key.id()),
        )
        .await;
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.unwrap();
        let proof = answer["proof"].as_str().unwrap().parse().unwrap();
        assert!(key.verify(&nonce, port, &proof));
        assert!(!key.verify(&Nonce::generate(), port, &proof));
    }
    let stranger = ProofKey::generate();
    let r = call(
        &app,
        None,
        Method::GET,
        &format!(
            "/api/proof?nonce={}&key={}",
            Nonce::generate(),
            stranger.id()
        ),
    )
    .await;
    assert_error(r, 404).await;
    let r = call(&app, None, Method::GET, "/api/proof?nonce=00&key=00").await;
    assert_error(r, 400).await;
}
