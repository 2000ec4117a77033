//! Who am I (`GET /api/whoami`: the caller's name and role, so the
//! dashboard shows only what the role may do) and is this the server I
//! mean (`GET /api/proof`: the answer to a client's challenge, before the
//! client sends its token or a file; see [`crate::access`]).

use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ErrorBody, HttpError};
use crate::access::{KeyId, Nonce, Principal};

type Result<T, E = HttpError> = std::result::Result<T, E>;

pub fn api(cfg: &mut web::ServiceConfig) {
    cfg.service(whoami).service(proof);
}

/// The caller, as its token names it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    #[serde(flatten)]
    principal: Principal,
    /// Whether this server asks for a token (without one, every caller is
    /// the anonymous admin).
    token_required: bool,
}

/// The caller's name and role (viewer, operator or admin).
#[utoipa::path(responses((status = 200, body = WhoAmI)))]
#[get("/api/whoami")]
pub async fn whoami(
    principal: web::ReqData<Principal>,
    state: web::Data<AppState>,
) -> HttpResponse {
    HttpResponse::Ok().json(WhoAmI {
        principal: principal.into_inner(),
        token_required: !state.keyring.is_open(),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ProofQuery {
    /// 32 random bytes of the client's, in hex.
    #[param(pattern = "^[0-9a-f]{64}$", value_type = String)]
    nonce: String,
    /// Which key to answer with: 16 hex digits derived from it.
    #[param(pattern = "^[0-9a-f]{16}$", value_type = String)]
    key: String,
}

/// The answer to a challenge.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProofAnswer {
    /// The keyed BLAKE3 of the nonce and this server's port, in hex.
    proof: String,
}

/// Proves this server holds a key (a token's hash, or its runtime file's
/// key) before a client sends the token or a file: the keyed BLAKE3 of the
/// client's nonce and the port listened on. Open without a token; it
/// reveals nothing of the key.
#[utoipa::path(params(ProofQuery), responses(
    (status = 200, body = ProofAnswer),
    (status = 400, description = "A nonce or key id that is not hex of the right length.", body = ErrorBody),
    (status = 404, description = "This server holds no key of that id.", body = ErrorBody),
))]
#[get("/api/proof")]
pub async fn proof(
    query: web::Query<ProofQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let bad = |what: &str, e: String| HttpError::BadRequest(format!("{what}: {e}"));
    let nonce: Nonce = query.nonce.parse().map_err(|e| bad("nonce", e))?;
    let id: KeyId = query.key.parse().map_err(|e| bad("key", e))?;
    let key = state
        .keyring
        .proof_key(&id)
        .ok_or_else(|| HttpError::NotFound(format!("this server holds no key {id}")))?;
    Ok(HttpResponse::Ok().json(ProofAnswer {
        proof: key.answer(&nonce, state.port).to_string(),
    }))
}
