//! Transport-neutral embeddings: admission, tokenization with the model's
//! rules, the per-request token limit, and the round trip through the
//! model's batcher. Handlers (and later the CLI) call this.

pub mod respond;
pub mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_api::ErrorKind;
use switchyard_engine::embed::batcher::SubmitError;
use switchyard_engine::embed::EmbedError;

use crate::error::ApiError;
use crate::service;
use crate::state::{AppState, Embedder};
use crate::telemetry;
use validate::Inputs;

/// The vectors of one request, in input order.
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens embedded, after truncation: the usage figure.
    pub tokens: usize,
}

/// Embeds the inputs of one checked request (see [`validate`]) with the
/// model `model` resolves to.
pub async fn embed(
    state: &AppState,
    embedder: Arc<Embedder>,
    model: &str,
    inputs: Inputs,
) -> Result<Embedded, ApiError> {
    let _permit = service::admit(state)?;
    let tokens = tokenize(embedder.clone(), inputs).await?;
    let total: usize = tokens.iter().map(Vec::len).sum();
    if total > embedder.max_request_tokens {
        return Err(ApiError::invalid(
            "input",
            format!(
                "The inputs hold {total} tokens in total, more than the {} one request may hold for this model; split them across requests.",
                embedder.max_request_tokens
            ),
        )
        .code("too_many_tokens"));
    }
    let started = Instant::now();
    let reply = embedder.batcher.submit(tokens).map_err(|e| match e {
        SubmitError::QueueFull => {
            metrics::counter!(telemetry::REJECTED, "reason" => "queue_full").increment(1);
            ApiError::overloaded(format!("The queue for model `{model}` is full; retry shortly."), 1)
        }
        SubmitError::Stopped => ApiError::internal(format!("The batcher for model `{model}` has stopped.")),
        SubmitError::Invalid(e) => input_error(&e),
    })?;
    metrics::gauge!(telemetry::QUEUE_DEPTH, "model" => model.to_string()).set(embedder.batcher.queue_depth() as f64);
    // Dropping `reply` on timeout (or when the client leaves and this future
    // is dropped) tells the batcher to skip what has not run yet.
    let limit = Duration::from_secs(state.config.server.request_timeout_secs);
    let vectors = match tokio::time::timeout(limit, reply).await {
        Err(_) => {
            return Err(
                ApiError::new(ErrorKind::Timeout, "The request ran past the server's time limit.").code("timeout"),
            )
        }
        Ok(Err(_)) => return Err(ApiError::internal("The batcher ended the request without an answer.")),
        Ok(Ok(Err(e))) => return Err(ApiError::internal(format!("Embedding failed: {e}"))),
        Ok(Ok(Ok(vectors))) => vectors,
    };
    metrics::histogram!(telemetry::EMBED_DURATION, "model" => model.to_string())
        .record(started.elapsed().as_secs_f64());
    Ok(Embedded { vectors, tokens: total })
}

/// Tokenizes (or checks token ids) off the async threads: 2048 long texts
/// take a while.
async fn tokenize(embedder: Arc<Embedder>, inputs: Inputs) -> Result<Vec<Vec<u32>>, ApiError> {
    tokio::task::spawn_blocking(move || {
        let model = embedder.batcher.model();
        let at = |i: usize| {
            move |e: EmbedError| {
                input_error(&EmbedError::BatchInput {
                    index: i,
                    source: Box::new(e),
                })
            }
        };
        match inputs {
            Inputs::Texts(texts) => texts
                .iter()
                .enumerate()
                .map(|(i, t)| model.tokenize(t).map_err(at(i)))
                .collect(),
            Inputs::Tokens(lists) => lists
                .iter()
                .enumerate()
                .map(|(i, ids)| model.check_tokens(ids).map_err(at(i)))
                .collect(),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task failed: {e}")))?
}

/// A 400 naming `input` for what the model refuses in an input; anything
/// else is ours.
fn input_error(e: &EmbedError) -> ApiError {
    let inner = match e {
        EmbedError::BatchInput { source, .. } => source.as_ref(),
        other => other,
    };
    let message = match e {
        EmbedError::BatchInput { index, source } => format!("`input[{index}]`: {source}."),
        other => format!("`input`: {other}."),
    };
    match inner {
        EmbedError::InputTooLong { .. } => ApiError::invalid("input", message).code("context_length_exceeded"),
        EmbedError::TokenOutOfRange { .. } | EmbedError::EmptyInput | EmbedError::Tokenizer(_) => {
            ApiError::invalid("input", message)
        }
        _ => ApiError::internal(message),
    }
}
