//! The OpenAPI 3 document, generated from the handlers' annotations and
//! types, plus the answers every route shares (the guards', the token's, the
//! engine's when it is shutting down) and the role each operation needs
//! (`x-required-role`, from [`super::access::POLICY`], which enforces it).
//! It is also what answers "which methods does this path have" for 405s, so
//! the two cannot disagree.

use std::sync::LazyLock;

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use super::access::{self, Access};
use super::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "PowerPulse",
        description = "Analyse customer-support chat exports: upload, follow, cancel, read, export."
    ),
    paths(
        routes::health,
        routes::upload,
        routes::estimate,
        super::preview::preview,
        routes::list_progress,
        routes::progress,
        routes::cancel,
        routes::events,
        routes::list_uploads,
        routes::get_upload,
        routes::delete_upload,
        routes::resume_upload,
        routes::conversations,
        routes::conversation,
        routes::summary,
        routes::insights,
        super::conversations::drill_down,
        super::alerts::list_alerts,
        super::alerts::acknowledge,
        routes::export,
        routes::backup,
        routes::metrics_text,
        routes::openapi_json,
        super::identity::whoami,
        super::identity::proof,
        super::audit::audit,
    ),
    components(schemas(super::ErrorBody, routes::ExportFormatParam)),
    modifiers(&SharedResponses)
)]
struct ApiDoc;

static DOCUMENT: LazyLock<Document> = LazyLock::new(ApiDoc::openapi);

pub fn document() -> &'static Document {
    &DOCUMENT
}

/// Adds the answers that do not depend on the route, to every route they
/// can come from.
struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, doc: &mut Document) {
        describe_event_stream(doc);
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                describe_access(op, access::access_of(method, path));
                let shared = shared_responses(path, method);
                for (status, description) in shared {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description));
                }
            }
        }
    }
}

/// States what an operation needs: `x-required-role` (`none` when it is
/// open), and a sentence of its description.
fn describe_access(op: &mut Operation, access: Option<Access>) {
    let (role, sentence) = match access {
        Some(Access::Token { role, action }) => (
            role.as_str(),
            format!(
                "Needs a token of the {role} role or above (viewer < operator < admin){}.",
                match action {
                    Some(a) => format!("; recorded in the audit log as `{a}`"),
                    None => String::new(),
                }
            ),
        ),
        _ => ("none", "Open: no token needed.".to_string()),
    };
    let extensions = op.extensions.get_or_insert_with(Default::default);
    extensions.insert("x-required-role".to_string(), serde_json::json!(role));
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{sentence}"),
        _ => sentence,
    });
}

/// `(status, description)` of the answers a route gets from the layers
/// around its handler.
fn shared_responses(path: &str, method: &str) -> Vec<(u16, &'static str)> {
    if path == "/healthz" {
        // Open to everyone, on every Host; it answers from memory.
        return Vec::new();
    }
    let open = access::access_of(method, path) == Some(Access::Open);
    let mut shared = vec![(
        421,
        "The Host header is not a name this server answers to (`server.allowed_hosts`).",
    )];
    if open {
        // Every documented route changes something or answers with data.
        shared.push((
            403,
            "Sent by another site (Origin or Sec-Fetch-Site): refused.",
        ));
    } else {
        shared.push((
            401,
            "A token is set (`server.token`, `[[server.tokens]]`) and the request does not \
             carry one it knows.",
        ));
        shared.push((
            403,
            "Sent by another site (Origin or Sec-Fetch-Site), or the token's role is below \
             the one this operation needs (`x-required-role`): refused.",
        ));
    }
    if path != "/api/openapi.json" {
        shared.push((500, "An internal error (logged)."));
        shared.push((503, "The server is shutting down."));
    }
    shared
}

/// The events route's 200: each event (OpenAPI 3.1 reads a `text/event-stream`
/// schema as one event) is `progress`, its data a `ProgressSnapshot` in JSON.
fn describe_event_stream(doc: &mut Document) {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let Some(op) = doc
        .paths
        .paths
        .get_mut("/api/progress/{upload_id}/events")
        .and_then(|item| item.get.as_mut())
    else {
        return;
    };
    let data = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("The upload's state: a ProgressSnapshot, as JSON."))
        .content_media_type("application/json")
        .extensions(Some(
            [(
                "contentSchema",
                serde_json::json!({"$ref": "#/components/schemas/ProgressSnapshot"}),
            )]
            .into_iter()
            .collect(),
        ));
    let event = ObjectBuilder::new()
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["progress"])),
        )
        .required("event")
        .property("data", data)
        .required("data")
        .build();
    op.responses.responses.insert(
        "200".to_string(),
        RefOr::T(
            utoipa::openapi::ResponseBuilder::new()
                .description(
                    "One `progress` event per change (at most four a second), ending with \
                     the final state.",
                )
                .content("text/event-stream", Content::new(Some(event)))
                .build(),
        ),
    );
}

fn error_response(description: &str) -> RefOr<Response> {
    let schema = RefOr::Ref(Ref::from_schema_name("ErrorBody"));
    RefOr::T(
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content("application/json", Content::new(Some(schema)))
            .build(),
    )
}

/// The operations of a path item, with their method names.
fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("GET", item.get.as_mut()),
        ("POST", item.post.as_mut()),
        ("PUT", item.put.as_mut()),
        ("PATCH", item.patch.as_mut()),
        ("DELETE", item.delete.as_mut()),
        ("HEAD", item.head.as_mut()),
        ("OPTIONS", item.options.as_mut()),
        ("TRACE", item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// Paths served outside the document (the dashboard), with their methods.
const UNDOCUMENTED: [(&str, &str); 2] = [("/", "GET"), ("/assets/{name}", "GET")];

/// Every path template and its `Allow` value.
static METHODS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let mut doc = DOCUMENT.clone();
    let mut table: Vec<(String, String)> = doc
        .paths
        .paths
        .iter_mut()
        .map(|(path, item)| {
            let methods: Vec<&str> = operations(item).into_iter().map(|(m, _)| m).collect();
            (path.clone(), methods.join(", "))
        })
        .collect();
    table.extend(
        UNDOCUMENTED
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string())),
    );
    table
});

/// The methods `path` is served with (for `Allow`), or `None` when no route has this path.
pub fn allowed_methods(path: &str) -> Option<String> {
    METHODS
        .iter()
        .find(|(template, _)| matches_template(template, path))
        .map(|(_, allow)| allow.clone())
}

/// Whether `path` fits `template`, where `{name}` stands for one non-empty segment.
fn matches_template(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) => {
                let variable = ts.starts_with('{') && ts.ends_with('}');
                if !(ts == ps || variable && !ps.is_empty()) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_templates_segment_by_segment() {
        let t = "/api/uploads/{upload_id}/conversations/{conversation_id}";
        assert!(matches_template(t, "/api/uploads/x/conversations/y"));
        assert!(!matches_template(t, "/api/uploads/x/conversations/"));
        assert!(!matches_template(t, "/api/uploads/x/conversations"));
        assert!(!matches_template(t, "/api/uploads/x/conversations/y/z"));
        assert!(matches_template("/", "/"));
        assert!(!matches_template("/", "/x"));
    }

    #[test]
    fn allow_lists_the_documented_methods() {
        assert_eq!(allowed_methods("/api/uploads").as_deref(), Some("GET"));
        assert_eq!(
            allowed_methods("/api/uploads/abc").as_deref(),
            Some("GET, DELETE")
        );
        assert_eq!(
            allowed_methods("/api/progress/abc").as_deref(),
            Some("GET, DELETE")
        );
        assert_eq!(allowed_methods("/api/upload").as_deref(), Some("POST"));
        assert_eq!(allowed_methods("/").as_deref(), Some("GET"));
        assert_eq!(allowed_methods("/nowhere"), None);
    }

    #[test]
    fn every_operation_states_the_role_access_enforces() {
        let mut doc = document().clone();
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                let access = access::access_of(method, path)
                    .unwrap_or_else(|| panic!("{method} {path} is not in access::POLICY"));
                let stated = &op.extensions.as_ref().unwrap()["x-required-role"];
                match access {
                    Access::Open => assert_eq!(stated, "none", "{method} {path}"),
                    Access::Token { role, .. } => {
                        assert_eq!(stated, role.as_str(), "{method} {path}")
                    }
                }
            }
        }
        // And every route of the table is documented (the dashboard's aside).
        for (method, path, _) in access::POLICY {
            if UNDOCUMENTED.contains(&(*path, *method)) {
                continue;
            }
            let item = doc.paths.paths.get_mut(*path).expect(path);
            assert!(
                operations(item).iter().any(|(m, _)| m == method),
                "{method} {path}"
            );
        }
        let backup = doc.paths.paths["/api/backup"].get.as_ref().unwrap();
        assert!(backup.description.as_ref().unwrap().contains("admin role"));
        let proof = doc.paths.paths["/api/proof"].get.as_ref().unwrap();
        assert!(!proof.responses.responses.contains_key("401"));
        // Two types named Role: a sender's and a token's, each its own schema.
        let schemas = &doc.components.as_ref().unwrap().schemas;
        let json = |name: &str| serde_json::to_string(&schemas[name]).unwrap();
        assert!(json("Role").contains("customer"), "{}", json("Role"));
        assert!(
            json("TokenRole").contains("operator"),
            "{}",
            json("TokenRole")
        );
    }

    #[test]
    fn every_route_documents_the_shared_answers() {
        let doc = document();
        let upload = doc.paths.paths["/api/upload"].post.as_ref().unwrap();
        for status in ["401", "403", "421", "429", "500", "503"] {
            assert!(upload.responses.responses.contains_key(status), "{status}");
        }
        let list = doc.paths.paths["/api/uploads"].get.as_ref().unwrap();
        assert!(list.responses.responses.contains_key("421"));
        assert!(list.responses.responses.contains_key("403"));
        let health = doc.paths.paths["/healthz"].get.as_ref().unwrap();
        assert_eq!(health.responses.responses.len(), 1);
    }
}
