//! Wire requests -> what the engine runs. Every OpenAI parameter is either
//! honoured, or refused with a 400 that names it; none is silently ignored.

use serde_json::Value;
use switchyard_api::chat::{ChatCompletionRequest, ChatMessage, MessageContent, Role};
use switchyard_api::common::Stop;
use switchyard_api::completions::{CompletionRequest, Prompt};
use switchyard_engine::llm::{SamplingParams, TemplateMessage};

use crate::config::GenerationDefaults;
use crate::error::ApiError;

/// The knobs shared by chat and completions, checked and defaulted.
pub struct Knobs {
    pub sampling: SamplingParams,
    /// As asked; `None` means "as much as fits, up to the configured default".
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

/// The raw knob values, borrowed from either request type.
pub struct RawKnobs<'a> {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub logit_bias: Option<&'a std::collections::HashMap<String, f32>>,
    pub max_tokens: Option<u32>,
    pub stop: Option<&'a Stop>,
    pub stream: Option<bool>,
    pub include_usage: Option<bool>,
    pub n: Option<u32>,
}

fn in_range(param: &str, v: Option<f32>, lo: f32, hi: f32) -> Result<Option<f32>, ApiError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(ApiError::invalid(
            param,
            format!("`{param}` must be between {lo} and {hi}, got {x}."),
        )),
        other => Ok(other),
    }
}

pub fn knobs(raw: RawKnobs<'_>, defaults: &GenerationDefaults, vocab: usize) -> Result<Knobs, ApiError> {
    if raw.n.is_some_and(|n| n != 1) {
        return Err(ApiError::unsupported("n", "more than one choice per request (n > 1)"));
    }
    let temperature = in_range("temperature", raw.temperature, 0.0, 2.0)?.unwrap_or(defaults.temperature);
    let top_p = match raw.top_p {
        Some(p) if !(p > 0.0 && p <= 1.0) => {
            return Err(ApiError::invalid(
                "top_p",
                format!("`top_p` must be in (0, 1], got {p}."),
            ))
        }
        Some(p) => p,
        None => defaults.top_p,
    };
    let top_k = match raw.top_k {
        Some(k) if k as usize > vocab => {
            return Err(ApiError::invalid(
                "top_k",
                format!("`top_k` must be at most the vocabulary size {vocab}."),
            ))
        }
        Some(k) => k as usize,
        None => 0,
    };
    let presence_penalty = in_range("presence_penalty", raw.presence_penalty, -2.0, 2.0)?.unwrap_or(0.0);
    let frequency_penalty = in_range("frequency_penalty", raw.frequency_penalty, -2.0, 2.0)?.unwrap_or(0.0);
    let mut logit_bias = Vec::new();
    if let Some(map) = raw.logit_bias {
        if map.len() > 1024 {
            return Err(ApiError::invalid(
                "logit_bias",
                "`logit_bias` may name at most 1024 tokens.",
            ));
        }
        for (k, &v) in map {
            let id: u32 = k
                .parse()
                .ok()
                .filter(|&id: &u32| (id as usize) < vocab)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "logit_bias",
                        format!("`logit_bias` key {k:?} is not a token id below {vocab}."),
                    )
                })?;
            if !(-100.0..=100.0).contains(&v) {
                return Err(ApiError::invalid(
                    "logit_bias",
                    format!("`logit_bias` values must be between -100 and 100, got {v}."),
                ));
            }
            logit_bias.push((id, v));
        }
        logit_bias.sort_by_key(|b| b.0);
    }
    if raw.max_tokens == Some(0) {
        return Err(ApiError::invalid("max_tokens", "`max_tokens` must be at least 1."));
    }
    let stop = raw.stop.cloned().map(Stop::into_vec).unwrap_or_default();
    if stop.len() > defaults.max_stop_sequences {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "At most {} stop sequences are allowed, got {}.",
                defaults.max_stop_sequences,
                stop.len()
            ),
        ));
    }
    if let Some(s) = stop.iter().find(|s| s.is_empty() || s.len() > defaults.max_stop_bytes) {
        return Err(ApiError::invalid(
            "stop",
            format!(
                "Each stop sequence must be 1 to {} bytes long, got {}.",
                defaults.max_stop_bytes,
                s.len()
            ),
        ));
    }
    let stream = raw.stream.unwrap_or(false);
    if raw.include_usage.is_some() && !stream {
        return Err(ApiError::invalid(
            "stream_options",
            "`stream_options` is only allowed when `stream` is true.",
        ));
    }
    let seed = raw.seed.map(|s| s as u64);
    Ok(Knobs {
        sampling: SamplingParams {
            temperature,
            top_p,
            top_k,
            seed,
            presence_penalty,
            frequency_penalty,
            logit_bias,
        },
        max_tokens: raw.max_tokens,
        stop,
        stream,
        include_usage: raw.include_usage.unwrap_or(false),
    })
}

fn present(v: &Option<Value>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_null())
}

/// Refuses the chat parameters Switchyard does not serve yet.
pub fn chat_unsupported(r: &ChatCompletionRequest) -> Result<(), ApiError> {
    if r.logprobs == Some(true) || r.top_logprobs.is_some() {
        return Err(ApiError::unsupported("logprobs", "returning log probabilities"));
    }
    let tools_given = r
        .tools
        .as_ref()
        .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()));
    if tools_given || present(&r.functions) {
        return Err(ApiError::unsupported(
            if tools_given { "tools" } else { "functions" },
            "tool and function calling",
        ));
    }
    if r.tool_choice.as_ref().is_some_and(|c| !c.is_null() && c != "none") || present(&r.function_call) {
        return Err(ApiError::unsupported("tool_choice", "tool and function calling"));
    }
    if let Some(f) = &r.response_format {
        if !f.is_null() && f.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::unsupported(
                "response_format",
                "structured output (only {\"type\": \"text\"})",
            ));
        }
    }
    if present(&r.audio) || r.modalities.as_ref().is_some_and(|m| m.iter().any(|x| x != "text")) {
        return Err(ApiError::unsupported("modalities", "audio output"));
    }
    if present(&r.prediction) {
        return Err(ApiError::unsupported("prediction", "predicted outputs"));
    }
    if present(&r.web_search_options) {
        return Err(ApiError::unsupported("web_search_options", "web search"));
    }
    if r.reasoning_effort.is_some() {
        return Err(ApiError::unsupported(
            "reasoning_effort",
            "reasoning effort for this model",
        ));
    }
    Ok(())
}

/// Chat messages -> template input. Only text content is served today.
pub fn chat_messages(messages: &[ChatMessage]) -> Result<Vec<TemplateMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must contain at least one message.",
        ));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let at = |field: &str| format!("messages[{i}].{field}");
            match m.role {
                Role::Tool | Role::Function => {
                    return Err(ApiError::unsupported(&at("role"), "tool and function messages"))
                }
                Role::Assistant if present(&m.tool_calls) || present(&m.function_call) => {
                    return Err(ApiError::unsupported(&at("tool_calls"), "tool calls"))
                }
                _ => {}
            }
            if present(&m.audio) {
                return Err(ApiError::unsupported(&at("audio"), "audio content"));
            }
            let content = match &m.content {
                Some(MessageContent::Text(t)) => t.clone(),
                Some(MessageContent::Parts(parts)) => {
                    let mut text = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => text.push_str(t),
                            ("text", None) => {
                                return Err(ApiError::invalid(
                                    format!("messages[{i}].content[{j}].text"),
                                    "A text part needs `text`.",
                                ))
                            }
                            (other, _) => {
                                return Err(ApiError::unsupported(
                                    &format!("messages[{i}].content[{j}].type"),
                                    &format!("`{other}` content"),
                                ))
                            }
                        }
                    }
                    text
                }
                None if m.role == Role::Assistant => String::new(),
                None => {
                    return Err(ApiError::invalid(
                        at("content"),
                        format!("A {} message needs `content`.", m.role.as_str()),
                    ))
                }
            };
            // The template knows `system`; `developer` is OpenAI's newer name for it.
            let role = if m.role == Role::Developer {
                "system"
            } else {
                m.role.as_str()
            };
            Ok(TemplateMessage {
                role: role.to_string(),
                content,
            })
        })
        .collect()
}

/// What a completion prompt is: text to tokenize, or token ids as given.
pub enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}

pub fn completion_prompt(r: &CompletionRequest, vocab: usize) -> Result<PromptInput, ApiError> {
    if r.best_of.is_some_and(|b| b != 1) {
        return Err(ApiError::unsupported("best_of", "best_of > 1"));
    }
    if r.logprobs.is_some() {
        return Err(ApiError::unsupported("logprobs", "returning log probabilities"));
    }
    if r.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unsupported("suffix", "insertion with a suffix"));
    }
    let one = |n: usize| {
        if n == 1 {
            Ok(())
        } else {
            Err(ApiError::unsupported("prompt", "more than one prompt per request"))
        }
    };
    let input = match &r.prompt {
        Prompt::Text(t) => PromptInput::Text(t.clone()),
        Prompt::Texts(v) => {
            one(v.len())?;
            PromptInput::Text(v[0].clone())
        }
        Prompt::Tokens(t) => PromptInput::Tokens(t.clone()),
        Prompt::TokenLists(v) => {
            one(v.len())?;
            PromptInput::Tokens(v[0].clone())
        }
    };
    match &input {
        PromptInput::Text(t) if t.is_empty() => Err(ApiError::invalid("prompt", "`prompt` must not be empty.")),
        PromptInput::Tokens(t) if t.is_empty() => Err(ApiError::invalid("prompt", "`prompt` must not be empty.")),
        PromptInput::Tokens(t) if t.iter().any(|&id| id as usize >= vocab) => Err(ApiError::invalid(
            "prompt",
            format!("`prompt` holds a token id outside the vocabulary (size {vocab})."),
        )),
        _ => Ok(input),
    }
}
