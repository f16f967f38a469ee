//! Malformed and hostile requests: each gets a 4xx in OpenAI's error shape,
//! and the server stays healthy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use common::{assert_error_shape, chat, MODEL};
use serde_json::{json, Value};

#[tokio::test]
async fn hostile_requests_get_openai_shaped_4xx() {
    let srv = common::start(|c| c.server.max_body_bytes = 256 * 1024).await;
    let chat_path = "/v1/chat/completions";
    let cmpl = "/v1/completions";
    let many_stops: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
    let long_prompt = "hello ".repeat(9000);
    let json_cases: Vec<(&str, &str, Value, u16)> = vec![
        ("array body", chat_path, json!([]), 400),
        (
            "missing model",
            chat_path,
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            400,
        ),
        (
            "model not a string",
            chat_path,
            json!({"model": 5, "messages": []}),
            400,
        ),
        ("missing messages", chat_path, json!({"model": MODEL}), 400),
        (
            "messages not a list",
            chat_path,
            json!({"model": MODEL, "messages": "hi"}),
            400,
        ),
        (
            "empty messages",
            chat_path,
            json!({"model": MODEL, "messages": []}),
            400,
        ),
        (
            "unknown role",
            chat_path,
            json!({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}),
            400,
        ),
        (
            "content a number",
            chat_path,
            json!({"model": MODEL, "messages": [{"role": "user", "content": 7}]}),
            400,
        ),
        (
            "user content null",
            chat_path,
            json!({"model": MODEL, "messages": [{"role": "user", "content": null}]}),
            400,
        ),
        (
            "image part",
            chat_path,
            json!({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            400,
        ),
        (
            "tool message",
            chat_path,
            json!({"model": MODEL, "messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}),
            400,
        ),
        (
            "temperature a string",
            chat_path,
            chat("hi", json!({"temperature": "hot"})),
            400,
        ),
        (
            "temperature too high",
            chat_path,
            chat("hi", json!({"temperature": 5})),
            400,
        ),
        (
            "temperature negative",
            chat_path,
            chat("hi", json!({"temperature": -1})),
            400,
        ),
        ("top_p zero", chat_path, chat("hi", json!({"top_p": 0})), 400),
        ("top_p above one", chat_path, chat("hi", json!({"top_p": 1.5})), 400),
        (
            "max_tokens negative",
            chat_path,
            chat("hi", json!({"max_tokens": -1})),
            400,
        ),
        (
            "max_tokens huge",
            chat_path,
            chat("hi", json!({"max_tokens": 1e30})),
            400,
        ),
        ("max_tokens zero", chat_path, chat("hi", json!({"max_tokens": 0})), 400),
        (
            "max_tokens past context",
            chat_path,
            chat("hi", json!({"max_tokens": 100_000})),
            400,
        ),
        ("n > 1", chat_path, chat("hi", json!({"n": 2})), 400),
        ("logprobs", chat_path, chat("hi", json!({"logprobs": true})), 400),
        (
            "tools",
            chat_path,
            chat(
                "hi",
                json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            ),
            400,
        ),
        (
            "json mode",
            chat_path,
            chat("hi", json!({"response_format": {"type": "json_object"}})),
            400,
        ),
        (
            "10 000 stop strings",
            chat_path,
            chat("hi", json!({"stop": many_stops})),
            400,
        ),
        (
            "5 stop strings",
            chat_path,
            chat("hi", json!({"stop": ["a", "b", "c", "d", "e"]})),
            400,
        ),
        ("empty stop string", chat_path, chat("hi", json!({"stop": ""})), 400),
        ("unknown field", chat_path, chat("hi", json!({"temprature": 1})), 400),
        (
            "presence_penalty out of range",
            chat_path,
            chat("hi", json!({"presence_penalty": 3})),
            400,
        ),
        (
            "logit_bias bad key",
            chat_path,
            chat("hi", json!({"logit_bias": {"abc": 1}})),
            400,
        ),
        (
            "logit_bias bad value",
            chat_path,
            chat("hi", json!({"logit_bias": {"1": 500}})),
            400,
        ),
        ("seed a string", chat_path, chat("hi", json!({"seed": "x"})), 400),
        (
            "stream_options without stream",
            chat_path,
            chat("hi", json!({"stream_options": {"include_usage": true}})),
            400,
        ),
        (
            "prompt past context window",
            chat_path,
            chat(&long_prompt, json!({})),
            400,
        ),
        (
            "unknown model",
            chat_path,
            json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
            404,
        ),
        (
            "completion empty prompt",
            cmpl,
            json!({"model": MODEL, "prompt": ""}),
            400,
        ),
        (
            "completion empty token list",
            cmpl,
            json!({"model": MODEL, "prompt": []}),
            400,
        ),
        (
            "completion token out of vocab",
            cmpl,
            json!({"model": MODEL, "prompt": [999_999]}),
            400,
        ),
        (
            "completion two prompts",
            cmpl,
            json!({"model": MODEL, "prompt": ["a", "b"]}),
            400,
        ),
        (
            "completion suffix",
            cmpl,
            json!({"model": MODEL, "prompt": "a", "suffix": "b"}),
            400,
        ),
        (
            "completion prompt an object",
            cmpl,
            json!({"model": MODEL, "prompt": {"a": 1}}),
            400,
        ),
        (
            "completion unknown model",
            cmpl,
            json!({"model": "nope", "prompt": "a"}),
            404,
        ),
    ];
    let mut count = 0;
    for (what, path, body, want) in &json_cases {
        let (status, resp) = srv.post(path, body.clone()).await;
        assert_eq!(status, *want, "{what}: {resp}");
        assert_error_shape(&resp, what);
        count += 1;
    }
    let raw_cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("broken JSON", b"{\"model\":".to_vec(), 400),
        ("empty body", Vec::new(), 400),
        (
            "invalid UTF-8",
            [
                &b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\""[..],
                &[0xff, 0xfe],
                &b"\"}]}"[..],
            ]
            .concat(),
            400,
        ),
        (
            "number too large for f32/f64",
            br#"{"model":"m","messages":[],"temperature":1e400}"#.to_vec(),
            400,
        ),
        ("deeply nested", "[".repeat(10_000).into_bytes(), 400),
        ("oversize body", vec![b' '; 300 * 1024], 413),
    ];
    for (what, body, want) in raw_cases {
        let (status, resp) = srv.post_raw(chat_path, body).await;
        assert_eq!(status, want, "{what}: {resp}");
        assert_error_shape(&resp, what);
        count += 1;
    }
    let (status, body) = srv.get(chat_path).await;
    assert_eq!(status, 405, "{body}");
    assert_error_shape(&serde_json::from_str(&body).unwrap_or_default(), "GET on a POST route");
    let (status, body) = srv.get("/v2/nothing").await;
    assert_eq!(status, 404, "{body}");
    assert_error_shape(&serde_json::from_str(&body).unwrap_or_default(), "unknown route");
    count += 2;
    assert!(count >= 30, "only {count} hostile cases");

    // Still healthy, and still answering.
    assert_eq!(srv.get("/health").await.0, 200);
    let (status, resp) = srv.post(chat_path, chat("Say hi", json!({"max_tokens": 4}))).await;
    assert_eq!(status, 200, "{resp}");
}
