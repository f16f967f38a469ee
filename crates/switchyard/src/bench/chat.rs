//! `switchyard bench chat`: closed-loop load on an OpenAI-compatible
//! `/v1/chat/completions` endpoint with streaming. `--concurrency` clients
//! each send chats back to back (one shared system prompt, varied questions)
//! until `--requests` are done. Reports aggregate completion tokens/s, time
//! to first token and end-to-end latency percentiles, so Switchyard and
//! llama.cpp's server are measured by one client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::Target,
    /// Chats to send in all (default: 4 per client).
    #[arg(long)]
    requests: Option<usize>,
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// A token id to forbid (logit bias -100), e.g. the end-of-turn token,
    /// so every answer is `max_tokens` long on every server.
    #[arg(long)]
    ban_token: Option<u32>,
}

const SYSTEM: &str = "You are a helpful assistant. Answer clearly and concisely, in plain English.";

const TOPICS: &[&str] = &[
    "how rainbows form",
    "why the sea is salty",
    "how a bicycle stays upright",
    "what a compiler does",
    "how bees make honey",
    "why leaves change colour in autumn",
    "how a refrigerator works",
    "what causes the seasons",
    "how vaccines train the immune system",
    "why bread rises",
    "how trains were first powered",
    "what a black hole is",
    "how paper is made from trees",
    "why cats purr",
    "how the internet sends a message",
    "what makes a good night's sleep",
];

/// The `i`-th chat: questions differ in topic and length.
fn chat(i: usize, args: &Args) -> Value {
    let topic = TOPICS[i % TOPICS.len()];
    let question = match i % 3 {
        0 => format!("Explain {topic}."),
        1 => format!("In a few sentences, explain {topic} to a curious twelve-year-old."),
        _ => format!(
            "I am preparing a short talk for my class and I keep getting confused. Could you explain \
             {topic}, step by step, and end with one surprising fact about it?"
        ),
    };
    let mut body = json!({
        "model": args.target.model,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question},
        ],
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(id) = args.ban_token {
        body["logit_bias"] = json!({ id.to_string(): -100 });
    }
    body
}

/// What one streamed chat measured.
struct Sample {
    ttft: f64,
    total: f64,
    tokens: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let concurrency = args.target.concurrency.max(1);
        let total = args.requests.unwrap_or(4 * concurrency).max(1);
        // A connection per chat: llama.cpp's server closes kept-alive
        // connections after a few requests, and a chat of seconds does not
        // notice a localhost handshake.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.target.timeout_s))
            .pool_max_idle_per_host(0)
            .build()?;
        let url = args.target.endpoint("/chat/completions");
        let bodies: Arc<Vec<Value>> = Arc::new((0..total).map(|i| chat(i, &args)).collect());
        // Warm-up, untimed: one short chat (connections, lazy loads).
        let mut warm = bodies[0].clone();
        warm["max_tokens"] = json!(4);
        stream_one(&client, &url, args.target.api_key.as_deref(), &warm).await?;

        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, url, key) = (client.clone(), url.clone(), args.target.api_key.clone());
            let (bodies, next) = (bodies.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    out.push(stream_one(&client, &url, key.as_deref(), body).await);
                }
                out
            }));
        }
        let mut samples = Vec::new();
        let mut errors = Vec::new();
        for t in tasks {
            for r in t.await? {
                match r {
                    Ok(s) => samples.push(s),
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let tokens: usize = samples.iter().map(|s| s.tokens).sum();
        let mut ttft: Vec<f64> = samples.iter().map(|s| s.ttft * 1e3).collect();
        let mut total_ms: Vec<f64> = samples.iter().map(|s| s.total * 1e3).collect();
        ttft.sort_by(f64::total_cmp);
        total_ms.sort_by(f64::total_cmp);
        let p = super::percentile;
        println!(
            "{}",
            json!({
                "concurrency": concurrency,
                "requests": samples.len(),
                "errors": errors.len(),
                "first_error": errors.first(),
                "completion_tokens": tokens,
                "seconds": secs,
                "tokens_per_s": tokens as f64 / secs,
                "ttft_p50_ms": p(&ttft, 0.5),
                "ttft_p99_ms": p(&ttft, 0.99),
                "latency_p50_ms": p(&total_ms, 0.5),
                "latency_p99_ms": p(&total_ms, 0.99),
            })
        );
        anyhow::ensure!(
            errors.is_empty(),
            "{} requests failed: {:?}",
            errors.len(),
            errors.first()
        );
        Ok(())
    })
}

/// Sends one streaming chat and reads it to the end. Tokens come from the
/// final usage chunk where the server sends one, else one per content chunk.
async fn stream_one(client: &reqwest::Client, url: &str, key: Option<&str>, body: &Value) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let mut req = client.post(url).json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let mut resp = req.send().await?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        anyhow::bail!("HTTP {status}: {text}");
    }
    let (mut buf, mut ttft, mut chunks, mut usage) = (Vec::<u8>::new(), None, 0usize, None);
    while let Some(bytes) = resp.chunk().await? {
        buf.extend_from_slice(&bytes);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data)?;
            let content = v["choices"][0]["delta"]["content"].as_str().unwrap_or("");
            if !content.is_empty() {
                chunks += 1;
                ttft.get_or_insert_with(|| started.elapsed().as_secs_f64());
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                usage = Some(n as usize);
            }
        }
    }
    let total = started.elapsed().as_secs_f64();
    Ok(Sample {
        ttft: ttft.unwrap_or(total),
        total,
        tokens: usage.unwrap_or(chunks),
    })
}
