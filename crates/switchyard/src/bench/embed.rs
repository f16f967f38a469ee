//! `switchyard bench embed`: the corpus through the embedding model in
//! process, as sentence-transformers' `encode` does it — tokenize, sort by
//! length, batches of `--batch` — timed end to end.

use std::path::PathBuf;
use std::time::Instant;

use switchyard_engine::embed::{EmbedOptions, EmbeddingModel};

#[derive(clap::Args)]
pub struct Args {
    /// Model folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long, default_value = "models/all-minilm-l6-v2")]
    model: PathBuf,
    /// Corpus from scripts/bench/make-corpus.py.
    #[arg(long)]
    corpus: PathBuf,
    /// Inputs per forward pass.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// Compute threads (rayon's pool).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::env::set_var("RAYON_NUM_THREADS", args.threads.max(1).to_string());
    let model = EmbeddingModel::load(&args.model, EmbedOptions::default())?;
    let corpus = super::read_corpus(&args.corpus)?;
    let batch = args.batch.max(1);
    // Warm-up: one batch, so page faults of the first pass are not timed.
    let warm: Vec<&str> = corpus.iter().take(batch).map(String::as_str).collect();
    model.embed(&warm)?;
    let mut rates = Vec::new();
    let mut tokens = 0;
    for rep in 0..args.repetitions.max(1) {
        let start = Instant::now();
        let mut ids = corpus
            .iter()
            .map(|t| model.tokenize(t))
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort_by_key(Vec::len);
        tokens = ids.iter().map(Vec::len).sum::<usize>();
        for chunk in ids.chunks(batch) {
            model.embed_tokens(chunk)?;
        }
        let secs = start.elapsed().as_secs_f64();
        let rate = corpus.len() as f64 / secs;
        println!(
            "{}",
            serde_json::json!({"rep": rep, "sentences_per_s": rate, "tokens_per_s": tokens as f64 / secs})
        );
        rates.push(rate);
    }
    let rate = super::median(rates);
    println!(
        "{}",
        serde_json::json!({"median": true, "threads": args.threads, "batch": batch, "sentences": corpus.len(), "tokens": tokens, "sentences_per_s": rate, "tokens_per_s": rate * tokens as f64 / corpus.len() as f64})
    );
    Ok(())
}
