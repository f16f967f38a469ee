//! The request body's `model` rewrite and the response body's `usage`.
//!
//! The rewrite finds where the top-level `model` value lies in the body
//! (one scan: other values are skipped, never built into a tree) and
//! splices the new name in; every other byte is kept as it came, key order
//! included. When the body already names the upstream model it is passed on
//! untouched, without a copy.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchyard_api::common::Usage;

use crate::error::GatewayError;

/// The top-level `model`, borrowed from the body so its place is known.
#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
}

/// Returns `body` with its top-level `model` set to `model`.
pub(crate) fn rewrite_model(body: &Bytes, model: &str) -> Result<Bytes, GatewayError> {
    let invalid = |message: String| GatewayError::InvalidRequest { message };
    // A derived struct would also accept a JSON array; only objects are requests.
    let open = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .filter(|&i| body[i] == b'{')
        .ok_or_else(|| invalid("not a JSON object".into()))?;
    let found: ModelField = serde_json::from_slice(body).map_err(|e| invalid(format!("not a JSON object: {e}")))?;
    let wanted = serde_json::to_string(model).map_err(|e| invalid(e.to_string()))?;
    let mut out = Vec::with_capacity(body.len() + wanted.len() + 10);
    match found.model {
        Some(raw) if raw.get() == wanted => return Ok(body.clone()),
        Some(raw) => {
            // `raw` borrows from `body`: its offset is where the value starts.
            let at = raw.get().as_ptr() as usize - body.as_ptr() as usize;
            out.extend_from_slice(&body[..at]);
            out.extend_from_slice(wanted.as_bytes());
            out.extend_from_slice(&body[at + raw.get().len()..]);
        }
        None => {
            let rest = &body[open + 1..];
            let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
            out.extend_from_slice(&body[..=open]);
            out.extend_from_slice(b"\"model\":");
            out.extend_from_slice(wanted.as_bytes());
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(rest);
        }
    }
    Ok(Bytes::from(out))
}

/// OpenAI `usage`, lenient: embeddings send no `completion_tokens`.
#[derive(Debug, Default, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
    #[serde(default)]
    total_tokens: Option<u32>,
}

impl From<WireUsage> for Usage {
    fn from(w: WireUsage) -> Self {
        Usage {
            prompt_tokens: w.prompt_tokens,
            completion_tokens: w.completion_tokens,
            total_tokens: w
                .total_tokens
                .unwrap_or(w.prompt_tokens.saturating_add(w.completion_tokens)),
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// The `usage` object of a JSON response or stream chunk, if it has one.
/// Other fields are skipped without being built.
pub(crate) fn parse_usage(json: &[u8]) -> Option<Usage> {
    serde_json::from_slice::<WithUsage>(json).ok()?.usage.map(Usage::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_model() {
        let body = Bytes::from_static(br#"{"model":"alias","messages":[{"role":"user","content":"hi  there"}],"n":1}"#);
        let out = rewrite_model(&body, "gpt-4o-mini").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["messages"][0]["content"], "hi  there");
        // Every other byte is kept, key order included.
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi  there"}],"n":1}"#
        );
    }

    #[test]
    fn same_model_is_not_copied_and_missing_model_is_added() {
        let body = Bytes::from_static(br#"{"model":"m","input":"x"}"#);
        let out = rewrite_model(&body, "m").unwrap();
        assert_eq!(out.as_ptr(), body.as_ptr());
        let out = rewrite_model(&Bytes::from_static(br#"{"input":"x"}"#), "m").unwrap();
        assert_eq!(&out[..], br#"{"model":"m","input":"x"}"#);
        let nested = Bytes::from_static(br#"{ "x": {"model":"inner"}, "model" : "o\"ld" }"#);
        let out = rewrite_model(&nested, "m").unwrap();
        assert_eq!(&out[..], br#"{ "x": {"model":"inner"}, "model" : "m" }"#);
        let out = rewrite_model(&Bytes::from_static(b" { } "), "m").unwrap();
        assert_eq!(&out[..], br#" {"model":"m" } "#);
        assert!(rewrite_model(&Bytes::from_static(b"[1]"), "m").is_err());
        assert!(rewrite_model(&Bytes::from_static(br#"{"model":"a","model":"b"}"#), "m").is_err());
    }

    #[test]
    fn usage_is_read_leniently() {
        let u = parse_usage(br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{}}}"#).unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens, u.total_tokens), (3, 4, 7));
        let u = parse_usage(br#"{"usage":{"prompt_tokens":5,"total_tokens":5}}"#).unwrap();
        assert_eq!(u.completion_tokens, 0);
        assert!(parse_usage(br#"{"usage":null}"#).is_none());
        assert!(parse_usage(b"not json").is_none());
    }
}
