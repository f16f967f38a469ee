//! `/v1/chat/completions` and `/v1/completions`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use switchyard_api::chat::ChatCompletionRequest;
use switchyard_api::completions::CompletionRequest;

use crate::auth::{Caller, UsageTicket};
use crate::error::ApiError;
use crate::extract::{self, RawBody};
use crate::respond::{self, Shape};
use crate::service::{self, PromptSource};
use crate::state::AppState;
use crate::upstream;
use crate::validate::{self, PromptInput, RawKnobs};

pub async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let body = match upstream::try_forward(&state, &caller, "/chat/completions", &headers, body).await {
        Ok(answer) => return answer,
        Err(native) => native,
    };
    let req: ChatCompletionRequest = extract::parse(&body)?;
    caller.may_use(&req.model)?;
    let model = req.model.clone();
    let result = chat_inner(&state, req, caller.ticket).await;
    state.models.note_error(&model, &result);
    result
}

async fn chat_inner(state: &AppState, req: ChatCompletionRequest, ticket: UsageTicket) -> Result<Response, ApiError> {
    let (engine, slot) = state.models.engine(&req.model).await?;
    ticket.serve(&req.model, &slot.config.id);
    let defaults = slot.config.generation(&state.config.generation);
    let vocab = engine.tokenizer().vocab_size();
    validate::chat_unsupported(&req)?;
    let messages = validate::chat_messages(&req.messages)?;
    let knobs = validate::knobs(
        RawKnobs {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            seed: req.seed,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            logit_bias: req.logit_bias.as_ref(),
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            stop: req.stop.as_ref(),
            stream: req.stream,
            include_usage: req.stream_options.as_ref().map(|o| o.include_usage),
            n: req.n,
        },
        &defaults,
        vocab,
    )?;
    let (stream, include_usage) = (knobs.stream, knobs.include_usage);
    let gen = service::start(
        state,
        (engine, slot),
        &req.model,
        PromptSource::Chat(messages),
        knobs,
        "chatcmpl",
    )
    .await?;
    let mut gen = gen;
    gen.ticket = Some(ticket);
    if stream {
        Ok(respond::stream(gen, Shape::Chat, include_usage, false))
    } else {
        respond::collect(gen, Shape::Chat, false).await
    }
}

pub async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let body = match upstream::try_forward(&state, &caller, "/completions", &headers, body).await {
        Ok(answer) => return answer,
        Err(native) => native,
    };
    let req: CompletionRequest = extract::parse(&body)?;
    caller.may_use(&req.model)?;
    let model = req.model.clone();
    let result = completions_inner(&state, req, caller.ticket).await;
    state.models.note_error(&model, &result);
    result
}

async fn completions_inner(
    state: &AppState,
    req: CompletionRequest,
    ticket: UsageTicket,
) -> Result<Response, ApiError> {
    let (engine, slot) = state.models.engine(&req.model).await?;
    ticket.serve(&req.model, &slot.config.id);
    let defaults = slot.config.generation(&state.config.generation);
    let vocab = engine.tokenizer().vocab_size();
    let prompt = match validate::completion_prompt(&req, vocab)? {
        PromptInput::Text(t) => PromptSource::Text(t),
        PromptInput::Tokens(t) => PromptSource::Tokens(t),
    };
    let knobs = validate::knobs(
        RawKnobs {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            seed: req.seed,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            logit_bias: req.logit_bias.as_ref(),
            max_tokens: req.max_tokens,
            stop: req.stop.as_ref(),
            stream: req.stream,
            include_usage: req.stream_options.as_ref().map(|o| o.include_usage),
            n: req.n,
        },
        &defaults,
        vocab,
    )?;
    let echo = req.echo.unwrap_or(false);
    let (stream, include_usage) = (knobs.stream, knobs.include_usage);
    let mut gen = service::start(state, (engine, slot), &req.model, prompt, knobs, "cmpl").await?;
    gen.ticket = Some(ticket);
    if stream {
        Ok(respond::stream(gen, Shape::Completion, include_usage, echo))
    } else {
        respond::collect(gen, Shape::Completion, echo).await
    }
}
