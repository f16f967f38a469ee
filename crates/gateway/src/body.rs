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
    match usage_at_end(json) {
        Some(found) => found,
        None => serde_json::from_slice::<WithUsage>(json).ok()?.usage.map(Usage::from),
    }
}

/// The fast path: OpenAI and the servers that copy its format write
/// `usage` as the last key of a response, so it is looked for from the end
/// and only its value is parsed (skipping the rest was ~4 % of a proxied
/// request's instructions). `None` when it is not plainly there, and the
/// caller parses the whole body. It is a top-level key when an unescaped
/// `"usage"` follows `{` or `,` (inside a JSON string that quote would
/// end the string) and its value is followed by the document's one
/// closing brace.
fn usage_at_end(json: &[u8]) -> Option<Option<Usage>> {
    const KEY: &[u8] = b"\"usage\"";
    let trim = |b: &[u8]| -> usize { b.iter().take_while(|c| c.is_ascii_whitespace()).count() };
    let at = json.windows(KEY.len()).rposition(|w| w == KEY)?;
    let before = json[..at].iter().rev().find(|c| !c.is_ascii_whitespace())?;
    if !matches!(before, b'{' | b',') {
        return None;
    }
    let rest = &json[at + KEY.len()..];
    let rest = rest[trim(rest)..].strip_prefix(b":")?;
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<Option<WireUsage>>();
    let usage = values.next()?.ok()?;
    let tail = &rest[values.byte_offset()..];
    let tail = tail[trim(tail)..].strip_prefix(b"}")?;
    (trim(tail) == tail.len()).then(|| usage.map(Usage::from))
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

    /// The fast path finds what a whole parse finds, or leaves it to one.
    #[test]
    fn usage_at_the_end_is_read_as_a_whole_parse_reads_it() {
        let whole = |j: &str| {
            serde_json::from_slice::<WithUsage>(j.as_bytes())
                .ok()
                .and_then(|w| w.usage)
                .map(Usage::from)
        };
        let fast = [
            r#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            "{\"id\":\"x\",\n  \"usage\" :\n {\"prompt_tokens\":1,\"completion_tokens\":2} \n}\n",
            r#"{"usage":{"prompt_tokens":5}}"#,
            r#"{"choices":[{"delta":{}}],"usage":null}"#,
            r#"{"choices":[{"message":{"content":"say \"usage\":{\"prompt_tokens\":9} please"}}],"usage":{"prompt_tokens":2,"completion_tokens":1}}"#,
        ];
        for j in fast {
            assert!(usage_at_end(j.as_bytes()).is_some(), "fast path missed {j}");
            assert_eq!(parse_usage(j.as_bytes()), whole(j), "{j}");
        }
        let slow = [
            // Not last, nested, a value rather than a key, inside a string.
            r#"{"usage":{"prompt_tokens":3,"completion_tokens":4},"id":"x"}"#,
            r#"{"a":{"usage":{"prompt_tokens":3}}}"#,
            r#"{"x":[{"usage":{"prompt_tokens":3}}],"usage":{"prompt_tokens":1},"z":1}"#,
            r#"{"object":"usage"}"#,
            r#"{"content":"\"usage\":{\"prompt_tokens\":9}}"}"#,
            r#"{"usage":{"prompt_tokens":3}} trailing"#,
            r#"{"choices":[]}"#,
        ];
        for j in slow {
            assert!(usage_at_end(j.as_bytes()).is_none(), "fast path taken for {j}");
            assert_eq!(parse_usage(j.as_bytes()), whole(j), "{j}");
        }
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
