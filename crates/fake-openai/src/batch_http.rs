//! The Files and Batch APIs over HTTP, under any prefix like
//! chat/completions: `POST /files` (multipart: `purpose`, `file`),
//! `GET /files/{id}`, `GET /files/{id}/content`, `DELETE /files/{id}`,
//! `POST /batches`, `GET /batches` (`limit`, `after`), `GET /batches/{id}`,
//! `POST /batches/{id}/cancel`. Every handler first moves batches along
//! their schedule ([`State::advance_batches`]).

use std::time::Instant;

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::batch::{BatchError, parse_input};
use crate::server::{State, error_body, lock};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    for prefix in ["", "/{prefix:.*}"] {
        cfg.service(web::resource(format!("{prefix}/files")).post(upload))
            .service(web::resource(format!("{prefix}/files/{{id}}/content")).get(file_content))
            .service(
                web::resource(format!("{prefix}/files/{{id}}"))
                    .get(file_object)
                    .delete(delete_file),
            )
            .service(
                web::resource(format!("{prefix}/batches"))
                    .post(create_batch)
                    .get(list_batches),
            )
            .service(web::resource(format!("{prefix}/batches/{{id}}/cancel")).post(cancel_batch))
            .service(web::resource(format!("{prefix}/batches/{{id}}")).get(get_batch));
    }
}

fn bad_request(message: &str, param: Option<&str>, code: Option<&str>) -> HttpResponse {
    let mut body = error_body(message, "invalid_request_error", json!(code));
    body["error"]["param"] = json!(param);
    HttpResponse::BadRequest().json(body)
}

fn not_found(message: &str) -> HttpResponse {
    HttpResponse::NotFound().json(error_body(message, "invalid_request_error", Value::Null))
}

fn batch_error(e: BatchError) -> HttpResponse {
    match e {
        BatchError::NotFound(message) => not_found(&message),
        BatchError::Invalid { message, param } => bad_request(&message, param, None),
    }
}

fn id(req: &HttpRequest) -> &str {
    req.match_info().get("id").unwrap_or_default()
}

async fn upload(req: HttpRequest, payload: web::Payload, state: web::Data<State>) -> HttpResponse {
    let limits = lock(&state.config).batch.clone();
    let mut form = Multipart::new(req.headers(), payload);
    let (mut purpose, mut file) = (None, None);
    while let Some(field) = form.next().await {
        let mut field = match field {
            Ok(field) => field,
            Err(e) => return bad_request(&format!("Invalid multipart body: {e}"), None, None),
        };
        let name = field.name().unwrap_or_default().to_string();
        let filename = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .unwrap_or("upload.jsonl")
            .to_string();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => return bad_request(&format!("Invalid multipart body: {e}"), None, None),
            };
            if bytes.len() + chunk.len() > limits.max_file_bytes {
                return bad_request(
                    &format!(
                        "File is too large: the maximum size is {} bytes.",
                        limits.max_file_bytes
                    ),
                    Some("file"),
                    Some("file_too_large"),
                );
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "purpose" => purpose = Some(String::from_utf8_lossy(&bytes).into_owned()),
            "file" => file = Some((filename, bytes)),
            _ => {}
        }
    }
    let Some(purpose) = purpose else {
        return bad_request(
            "Missing required parameter: 'purpose'.",
            Some("purpose"),
            None,
        );
    };
    if purpose != "batch" {
        return bad_request(
            &format!("Invalid value for 'purpose': {purpose:?}. The fake accepts 'batch'."),
            Some("purpose"),
            None,
        );
    }
    let Some((filename, bytes)) = file else {
        return bad_request("Missing required parameter: 'file'.", Some("file"), None);
    };
    state.receive(&bytes);
    if limits.validate_on_upload
        && let Err(e) = parse_input(&bytes, limits.max_file_lines)
    {
        return bad_request(&e.message, Some("file"), Some(e.code));
    }
    let object = lock(&state.batches)
        .add_file(&filename, &purpose, bytes, Instant::now())
        .object();
    state.recorder().file_uploaded();
    HttpResponse::Ok().json(object)
}

async fn file_object(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    state.advance_batches();
    match lock(&state.batches).file(id(&req)) {
        Some(file) => HttpResponse::Ok().json(file.object()),
        None => not_found(&format!("No such File object: {}", id(&req))),
    }
}

async fn file_content(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    state.advance_batches();
    match lock(&state.batches).file(id(&req)) {
        Some(file) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(file.bytes.clone()),
        None => not_found(&format!("No such File object: {}", id(&req))),
    }
}

async fn delete_file(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if lock(&state.batches).delete_file(id(&req)) {
        HttpResponse::Ok().json(json!({"id": id(&req), "object": "file", "deleted": true}))
    } else {
        not_found(&format!("No such File object: {}", id(&req)))
    }
}

async fn create_batch(body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let message = format!("We could not parse the JSON body of your request. ({e})");
            return bad_request(&message, None, None);
        }
    };
    state.advance_batches();
    let created = lock(&state.batches).create(&request, Instant::now());
    match created {
        Ok(batch) => {
            state.recorder().batch_created();
            HttpResponse::Ok().json(batch)
        }
        Err(e) => batch_error(e),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list_batches(query: web::Query<ListQuery>, state: web::Data<State>) -> HttpResponse {
    state.advance_batches();
    let list = lock(&state.batches).list(query.limit, query.after.as_deref());
    HttpResponse::Ok().json(list)
}

async fn get_batch(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    state.advance_batches();
    let batch = lock(&state.batches).get(id(&req));
    match batch {
        Ok(batch) => HttpResponse::Ok().json(batch),
        Err(e) => batch_error(e),
    }
}

async fn cancel_batch(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    // Lines due before the cancel finish first.
    state.advance_batches();
    let cancelled = lock(&state.batches).cancel(id(&req), Instant::now());
    match cancelled {
        Ok((batch, newly)) => {
            if newly {
                state.recorder().batch_cancelled();
            }
            HttpResponse::Ok().json(batch)
        }
        Err(e) => batch_error(e),
    }
}
