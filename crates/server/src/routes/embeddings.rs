//! `/v1/embeddings`.

use axum::extract::State;
use axum::Json;
use switchyard_api::embeddings::{EmbeddingRequest, EmbeddingResponse};

use crate::embeddings::{self, respond, validate};
use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::state::AppState;

pub async fn embeddings(
    State(state): State<AppState>,
    OpenAiJson(req): OpenAiJson<EmbeddingRequest>,
) -> Result<Json<EmbeddingResponse>, ApiError> {
    let embedder = state.models.embedder(&req.model).await?;
    let validate::EmbedRequest { model, inputs, format } =
        validate::embedding_request(req, embedder.batcher.model().dims())?;
    let embedded = embeddings::embed(&state, embedder, &model, inputs).await?;
    Ok(Json(respond::response(model, embedded, format)))
}
