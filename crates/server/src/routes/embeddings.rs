//! `/v1/embeddings`.

use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use switchyard_api::embeddings::{EmbeddingRequest, EmbeddingResponse};

use crate::auth::Caller;
use crate::embeddings::{self, respond, validate};
use crate::error::ApiError;
use crate::extract::{self, RawBody};
use crate::state::AppState;
use crate::upstream;

pub async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let body = match upstream::try_forward(&state, &caller, "/embeddings", &headers, body).await {
        Ok(answer) => return answer,
        Err(native) => native,
    };
    let req: EmbeddingRequest = extract::parse(&body)?;
    caller.may_use(&req.model)?;
    let id = req.model.clone();
    let (body, tokens) = run(&state, req).await?;
    if let Some(slot) = state.models.get(&id) {
        caller.ticket.serve(&id, &slot.config.id);
    }
    caller.ticket.tokens(tokens as u64, 0);
    Ok(Json(body).into_response())
}

/// Embeds one request with its model, counting the outcome in the model's
/// stats; gives the answer and the tokens it embedded.
pub async fn run(state: &AppState, req: EmbeddingRequest) -> Result<(EmbeddingResponse, u32), ApiError> {
    let (id, started) = (req.model.clone(), Instant::now());
    let result = embed(state, req).await;
    state.models.note_error(&id, &result);
    if let (Ok((_, tokens)), Some(slot)) = (&result, state.models.get(&id)) {
        slot.served.done(*tokens, 0, started);
    }
    result
}

async fn embed(state: &AppState, req: EmbeddingRequest) -> Result<(EmbeddingResponse, u32), ApiError> {
    let embedder = state.models.embedder(&req.model).await?;
    let validate::EmbedRequest { model, inputs, format } =
        validate::embedding_request(req, embedder.batcher.model().dims())?;
    let embedded = embeddings::embed(state, embedder, &model, inputs).await?;
    let tokens = embedded.tokens as u32;
    Ok((respond::response(model, embedded, format), tokens))
}
