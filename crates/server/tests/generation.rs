//! Generation over HTTP with the real model: streaming and plain answers
//! agree, stop strings and max_tokens end generation as OpenAI says.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

mod common;

use common::{chat, MODEL};
use serde_json::{json, Value};

fn streamed_text(events: &[Value], field: &str) -> String {
    events
        .iter()
        .filter_map(|e| e["choices"].get(0))
        .filter_map(|c| {
            if field == "delta" {
                c["delta"]["content"].as_str()
            } else {
                c["text"].as_str()
            }
        })
        .collect()
}

#[tokio::test]
async fn streaming_and_plain_chat_agree() {
    let srv = common::start(|_| {}).await;
    let body = chat("Name three colours.", json!({"max_tokens": 40}));
    let (status, plain) = srv.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(status, 200, "{plain}");
    let text = plain["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!text.is_empty());
    assert_eq!(plain["object"], "chat.completion");
    assert_eq!(plain["choices"][0]["message"]["role"], "assistant");

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let events = srv.stream("/v1/chat/completions", sbody).await;
    assert_eq!(events.last(), Some(&json!("[DONE]")));
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(streamed_text(&events, "delta"), text);
    let finish: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&plain["choices"][0]["finish_reason"]]);
    let usage = &events[events.len() - 2];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], plain["usage"]);
}

#[tokio::test]
async fn streaming_and_plain_completion_agree_and_max_tokens_gives_length() {
    let srv = common::start(|_| {}).await;
    let body = json!({"model": MODEL, "prompt": "The quick brown fox", "max_tokens": 12, "temperature": 0});
    let (status, plain) = srv.post("/v1/completions", body.clone()).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["object"], "text_completion");
    assert_eq!(plain["choices"][0]["finish_reason"], "length");
    assert_eq!(plain["usage"]["completion_tokens"], 12);
    assert_eq!(plain["usage"]["prompt_tokens"], 4);
    assert_eq!(plain["usage"]["total_tokens"], 16);
    let text = plain["choices"][0]["text"].as_str().unwrap_or_default().to_string();

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let events = srv.stream("/v1/completions", sbody).await;
    assert_eq!(streamed_text(&events, "text"), text);
    assert!(events.iter().all(|e| e.get("usage").is_none()), "usage only when asked");

    let mut echo = body.clone();
    echo["echo"] = json!(true);
    let (_, echoed) = srv.post("/v1/completions", echo).await;
    assert_eq!(
        echoed["choices"][0]["text"].as_str().unwrap_or_default(),
        format!("The quick brown fox{text}")
    );
}

#[tokio::test]
async fn stop_strings_cut_before_the_match_in_both_modes() {
    let srv = common::start(|_| {}).await;
    let body =
        json!({"model": MODEL, "prompt": "Once upon a time, in a small village,", "max_tokens": 30, "temperature": 0});
    let (_, plain) = srv.post("/v1/completions", body.clone()).await;
    let text = plain["choices"][0]["text"].as_str().unwrap_or_default().to_string();
    // A stop string from the middle of the text: it spans token edges.
    let start = text.char_indices().nth(12).map_or(0, |(i, _)| i);
    let end = text.char_indices().nth(17).map_or(text.len(), |(i, _)| i);
    let stop = text[start..end].to_string();
    let cut = text.find(&stop).unwrap_or(start);
    let mut sbody = body.clone();
    sbody["stop"] = json!([stop.clone(), "zzzz-never"]);
    let (_, stopped) = srv.post("/v1/completions", sbody.clone()).await;
    assert_eq!(
        stopped["choices"][0]["text"].as_str().unwrap_or_default(),
        &text[..cut],
        "stop {stop:?}"
    );
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
    sbody["stream"] = json!(true);
    let events = srv.stream("/v1/completions", sbody).await;
    let streamed = streamed_text(&events, "text");
    assert_eq!(streamed, &text[..cut]);
    assert!(!streamed.contains(&stop));
}

#[tokio::test]
async fn models_are_listed_and_request_ids_echoed() {
    let srv = common::start(|_| {}).await;
    let (status, body) = srv.get("/v1/models").await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], MODEL);
    assert_eq!(list["data"][0]["kind"], "chat");
    let (status, _) = srv.get(&format!("/v1/models/{MODEL}")).await;
    assert_eq!(status, 200);
    assert_eq!(srv.get("/v1/models/nope").await.0, 404);
    assert_eq!(srv.get("/ready").await.0, 200);
    let root: Value = serde_json::from_str(&srv.get("/").await.1).unwrap_or_default();
    assert_eq!(root["name"], "switchyard");

    let resp = srv
        .client
        .get(format!("{}/health", srv.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()),
        Some("abc-123")
    );
    let resp = srv
        .client
        .get(format!("{}/health", srv.base))
        .send()
        .await
        .expect("sent");
    assert!(resp.headers().get("x-request-id").is_some_and(|v| v.len() >= 32));
}
