//! `switchyard bench …`: measurements for docs/benchmarks.md. Each prints one
//! JSON line per repetition and a final `"median": true` line for scripts.

mod chat;
mod embed;
mod http;
mod kernels;
mod llm;
mod tenancy;

use std::path::Path;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Single-stream prefill and decode speed of a GGUF model (llama-bench's pp and tg).
    Llm(llm::Args),
    /// In-process sentences/s of an embedding model over a corpus.
    Embed(embed::Args),
    /// Load on an OpenAI-compatible /v1/embeddings endpoint (ours or any other).
    Http(http::Args),
    /// Concurrent streaming chats on an OpenAI-compatible /v1/chat/completions endpoint.
    Chat(chat::Args),
    /// The quantized matmul kernels alone (SWITCHYARD_SIMD picks a narrower one).
    Kernels(kernels::Args),
    /// What tenancy adds per request (key, limits, budget) and usage records/s, on a database.
    Tenancy(tenancy::Args),
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Llm(args) => llm::run(args),
        BenchCommand::Embed(args) => embed::run(args),
        BenchCommand::Http(args) => http::run(args),
        BenchCommand::Kernels(args) => kernels::run(args),
        BenchCommand::Chat(args) => chat::run(args),
        BenchCommand::Tenancy(args) => tenancy::run(args),
    }
}

/// The OpenAI-compatible server a load client drives (`bench http`, `bench chat`).
#[derive(clap::Args)]
pub struct Target {
    /// Base URL of the API, e.g. http://127.0.0.1:8080/v1
    #[arg(long)]
    url: String,
    /// Model name to send.
    #[arg(long)]
    model: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Bearer token, if the server wants one.
    #[arg(long, env = "BENCH_API_KEY")]
    api_key: Option<String>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
}

impl Target {
    /// `path` under the base URL, e.g. `/embeddings`.
    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }
}

/// The corpus format of scripts/bench/make-corpus.py: one JSON string per line.
fn read_corpus(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read corpus {}: {e}", path.display()))?;
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    let corpus = lines.map(serde_json::from_str).collect::<Result<Vec<String>, _>>()?;
    anyhow::ensure!(!corpus.is_empty(), "corpus {} is empty", path.display());
    Ok(corpus)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The value below which `q` of the sorted samples fall (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
