//! `switchyard bench llm`: one forward pass over a prompt (pp) and greedy
//! decode steps (tg), the two figures `llama-bench -p 512 -n 128` reports.

use std::path::PathBuf;

use switchyard_engine::llm::{self, LlamaModel, LoadedGguf};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF file to measure.
    #[arg(long, default_value = switchyard_server::config::DEFAULT_MODEL_PATH)]
    model: PathBuf,
    /// Prompt length for the prefill figure (llama-bench's pp).
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens to generate for the decode figure (llama-bench's tg).
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// Compute threads (rayon's pool).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Also measure aggregate decode of this many sequences stepping together
    /// (the batched forward pass continuous batching will use); 0 = skip.
    #[arg(long, default_value_t = 0)]
    batch: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    // As the engine runs: the calling thread is one of the pool's workers.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.max(1))
        .build()?;
    pool.install(|| run_inner(args))
}

fn run_inner(args: Args) -> anyhow::Result<()> {
    let mut gguf = LoadedGguf::open(&args.model)?;
    let model = LlamaModel::load(&mut gguf)?;
    let mut pp = Vec::new();
    let mut tg = Vec::new();
    for rep in 0..args.repetitions.max(1) {
        let r = llm::bench::run(&model, args.prompt_tokens, args.gen_tokens)?;
        println!(
            "{}",
            serde_json::json!({"rep": rep, "pp": r.prompt_tokens, "pp_tok_s": r.prefill_tokens_per_s, "tg": r.gen_tokens, "tg_tok_s": r.decode_tokens_per_s})
        );
        pp.push(r.prefill_tokens_per_s);
        tg.push(r.decode_tokens_per_s);
    }
    let mut batched = Vec::new();
    for _ in 0..args.repetitions.max(1) {
        if args.batch > 0 {
            batched.push(llm::bench::run_batched(&model, args.batch, args.gen_tokens)?);
        }
    }
    println!(
        "{}",
        serde_json::json!({"median": true, "threads": args.threads, "pp_tok_s": super::median(pp), "tg_tok_s": super::median(tg), "batch": args.batch, "batch_tg_tok_s": (args.batch > 0).then(|| super::median(batched))})
    );
    Ok(())
}
