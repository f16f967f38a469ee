//! A real HTTP upstream on 127.0.0.1:0 whose answers each test scripts,
//! for this crate's tests and the server's (feature `testing`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support may panic

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{DeploymentConfig, GatewayError, UpstreamBody, UpstreamRequest, UpstreamResponse};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// What the upstream does for one call.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer `status` with `body` after `delay_ms`.
    Json {
        status: u16,
        body: String,
        headers: Vec<(&'static str, String)>,
        delay_ms: u64,
    },
    /// Never answer.
    Hang,
    /// Send SSE chunks, each after its delay; then end, or cut the connection.
    Sse { chunks: Vec<(u64, String)>, abort: bool },
}

pub const USAGE: &str = r#""usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}"#;

pub fn ok() -> Step {
    Step::Json {
        status: 200,
        body: format!(r#"{{"id":"c1","object":"chat.completion","choices":[],{USAGE}}}"#),
        headers: vec![],
        delay_ms: 0,
    }
}

pub fn status(status: u16) -> Step {
    Step::Json {
        status,
        body: format!(r#"{{"error":{{"message":"status {status}"}}}}"#),
        headers: vec![],
        delay_ms: 0,
    }
}

pub fn slow_ok(delay_ms: u64) -> Step {
    match ok() {
        Step::Json {
            status, body, headers, ..
        } => Step::Json {
            status,
            body,
            headers,
            delay_ms,
        },
        other => other,
    }
}

pub fn sse_chunk(text: &str) -> String {
    format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n")
}

pub fn sse_usage() -> String {
    format!("data: {{\"choices\":[],{USAGE}}}\n\n")
}

pub const SSE_DONE: &str = "data: [DONE]\n\n";

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Step>>,
    calls: AtomicUsize,
    bodies: Mutex<Vec<serde_json::Value>>,
    headers: Mutex<Vec<HeaderMap>>,
    /// When each SSE chunk was handed to the server, in send order.
    sent: Mutex<Vec<Instant>>,
}

pub struct Upstream {
    /// The OpenAI-compatible base URL, `http://127.0.0.1:PORT/v1`.
    pub url: String,
    shared: Arc<Shared>,
}

impl Upstream {
    /// Starts a server that plays `script`, then answers [`ok`] forever.
    pub async fn start(script: Vec<Step>) -> Self {
        let shared = Arc::new(Shared::default());
        shared.script.lock().unwrap().extend(script);
        let app = Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/v1"),
            shared,
        }
    }

    pub fn push(&self, step: Step) {
        self.shared.script.lock().unwrap().push_back(step);
    }

    /// Requests that reached the server.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.shared.bodies.lock().unwrap().clone()
    }

    /// The request headers of each call.
    pub fn headers(&self) -> Vec<HeaderMap> {
        self.shared.headers.lock().unwrap().clone()
    }

    pub fn sent(&self) -> Vec<Instant> {
        self.shared.sent.lock().unwrap().clone()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    shared.headers.lock().unwrap().push(headers);
    if let Ok(v) = serde_json::from_slice(&body) {
        shared.bodies.lock().unwrap().push(v);
    }
    let step = shared.script.lock().unwrap().pop_front().unwrap_or_else(ok);
    match step {
        Step::Json {
            status,
            body,
            headers,
            delay_ms,
        } => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            let h = response.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            for (name, value) in headers {
                h.insert(name, HeaderValue::from_str(&value).unwrap());
            }
            response
        }
        Step::Hang => {
            futures::future::pending::<()>().await;
            unreachable!()
        }
        Step::Sse { chunks, abort } => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
            tokio::spawn(async move {
                for (delay_ms, chunk) in chunks {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    shared.sent.lock().unwrap().push(Instant::now());
                    if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        return;
                    }
                }
                if abort {
                    let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut");
                    let _ = tx.send(Err(cut)).await;
                }
            });
            let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("text/event-stream"));
            response
        }
    }
}

/// Small, fast limits for tests: 300 ms to first byte, 2 retries 10–50 ms
/// apart without jitter, breaker opens after 3 failures for 300 ms.
pub fn config(name: &str, url: &str) -> DeploymentConfig {
    let mut cfg = DeploymentConfig::new(name, url);
    cfg.model = Some(format!("{name}-upstream"));
    cfg.timeouts.connect_ms = 500;
    cfg.timeouts.first_byte_ms = 300;
    cfg.timeouts.total_ms = 5_000;
    cfg.retries.max_retries = 2;
    cfg.retries.backoff_base_ms = 10;
    cfg.retries.backoff_max_ms = 50;
    cfg.retries.jitter = false;
    cfg.breaker.failure_threshold = 3;
    cfg.breaker.open_ms = 300;
    cfg
}

pub fn chat(stream: bool) -> UpstreamRequest {
    let body = format!(r#"{{"model":"alias","stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#);
    UpstreamRequest::new("/chat/completions", body, stream)
}

/// Bounds a test step so a bug fails fast instead of hanging.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}

/// The whole body of a non-streaming answer.
pub fn full(response: &UpstreamResponse) -> &Bytes {
    match &response.body {
        UpstreamBody::Full { bytes, .. } => bytes,
        UpstreamBody::Stream { .. } => panic!("expected a whole body"),
    }
}

/// Every item of a streamed answer: the chunks, then the error if one came.
pub async fn drain(response: UpstreamResponse) -> (Vec<Bytes>, Option<GatewayError>, crate::StreamSummary) {
    let UpstreamBody::Stream { mut chunks, summary } = response.body else {
        panic!("expected a stream");
    };
    let mut got = Vec::new();
    let mut error = None;
    while let Some(item) = chunks.next().await {
        match item {
            Ok(chunk) => got.push(chunk),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(chunks.next().await.is_none(), "nothing after the end or the error");
    drop(chunks);
    (got, error, summary.wait().await)
}

pub fn text(chunks: &[Bytes]) -> String {
    chunks.iter().map(|c| String::from_utf8_lossy(c)).collect()
}
