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
use crate::service::{self, Generation, PromptSource};
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
    let result = match start_chat(&state, req, Some(&caller.ticket)).await {
        Ok(started) => started.respond(caller.ticket).await,
        Err(e) => Err(e),
    };
    state.models.note_error(&model, &result);
    result
}

/// A generation under way, and how its answer is to be shaped.
pub struct Started {
    pub gen: Generation,
    pub shape: Shape,
    pub stream: bool,
    pub include_usage: bool,
    pub echo: bool,
}

impl Started {
    /// The answer as a response to the client, whose usage goes to `ticket`.
    pub async fn respond(mut self, ticket: UsageTicket) -> Result<Response, ApiError> {
        self.gen.ticket = Some(ticket);
        if self.stream {
            Ok(respond::stream(self.gen, self.shape, self.include_usage, self.echo))
        } else {
            respond::collect(self.gen, self.shape, self.echo).await
        }
    }
}

/// Checks a chat request against its model and starts generating. The
/// ticket, when given, is told which deployment serves the request.
pub async fn start_chat(
    state: &AppState,
    req: ChatCompletionRequest,
    ticket: Option<&UsageTicket>,
) -> Result<Started, ApiError> {
    let (engine, slot) = state.models.engine(&req.model).await?;
    if let Some(t) = ticket {
        t.serve(&req.model, &slot.config.id);
    }
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
    Ok(Started {
        gen,
        shape: Shape::Chat,
        stream,
        include_usage,
        echo: false,
    })
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
    let result = match start_completion(&state, req, Some(&caller.ticket)).await {
        Ok(started) => started.respond(caller.ticket).await,
        Err(e) => Err(e),
    };
    state.models.note_error(&model, &result);
    result
}

/// [`start_chat`] for a text completion.
pub async fn start_completion(
    state: &AppState,
    req: CompletionRequest,
    ticket: Option<&UsageTicket>,
) -> Result<Started, ApiError> {
    let (engine, slot) = state.models.engine(&req.model).await?;
    if let Some(t) = ticket {
        t.serve(&req.model, &slot.config.id);
    }
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
    let gen = service::start(state, (engine, slot), &req.model, prompt, knobs, "cmpl").await?;
    Ok(Started {
        gen,
        shape: Shape::Completion,
        stream,
        include_usage,
        echo,
    })
}
