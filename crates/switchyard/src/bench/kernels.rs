//! `switchyard bench kernels`: the quantized matmul kernels alone, per weight
//! format, as matrix-vector (a decode step) and matrix-matrix (a prompt)
//! products on synthetic weights of SmolLM2's FFN shape. The kernel is the
//! best this CPU has; `SWITCHYARD_SIMD=avx2` or `baseline` selects a
//! narrower one (AVX2 tiles, scalar reference) for comparison.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use switchyard_engine::llm::QWeight;

#[derive(clap::Args)]
pub struct Args {
    /// Weight rows (outputs).
    #[arg(long, default_value_t = 1536)]
    rows: usize,
    /// Weight columns (inputs), a multiple of 32.
    #[arg(long, default_value_t = 576)]
    cols: usize,
    /// Activation rows of the matrix-matrix product.
    #[arg(long, default_value_t = 64)]
    tokens: usize,
    /// Seconds to spend per measurement (at least one call).
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Compute threads (rayon's pool).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::env::set_var("RAYON_NUM_THREADS", args.threads.max(1).to_string());
    let simd = std::env::var("SWITCHYARD_SIMD").unwrap_or_else(|_| "best".into());
    let vals: Vec<f32> = (0..args.rows * args.cols)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.1)
        .collect();
    let dense = Tensor::from_vec(vals, (args.rows, args.cols), &Device::Cpu)?;
    for (name, dtype) in [
        ("q4_0", GgmlDType::Q4_0),
        ("q4_1", GgmlDType::Q4_1),
        ("q8_0", GgmlDType::Q8_0),
    ] {
        let w = QWeight::from_qtensor(&QTensor::quantize(&dense, dtype)?)?;
        for t in [1, args.tokens.max(1)] {
            let x: Vec<f32> = (0..t * args.cols).map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0).collect();
            w.matmul(&x, t); // warm-up
            let start = Instant::now();
            let mut calls = 0u64;
            while calls == 0 || start.elapsed().as_secs_f64() < args.seconds {
                std::hint::black_box(w.matmul(std::hint::black_box(&x), t));
                calls += 1;
            }
            let per_call = start.elapsed().as_secs_f64() / calls as f64;
            let blocks = (args.rows * t * args.cols / 32) as f64;
            println!(
                "{}",
                serde_json::json!({"format": name, "simd": simd, "threads": args.threads, "rows": args.rows, "cols": args.cols, "tokens": t, "us_per_call": per_call * 1e6, "gmac_per_s": blocks * 32.0 / per_call / 1e9})
            );
        }
    }
    Ok(())
}
