//! The OpenAPI 3 document, generated from the handlers' annotations and types.

use utoipa::OpenApi;

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
        routes::export,
        routes::metrics_text,
        routes::openapi_json,
    )
)]
struct ApiDoc;

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
