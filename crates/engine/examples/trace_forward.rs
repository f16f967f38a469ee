//! Writes the forward pass's intermediate tensors, named as llama.cpp names
//! them, for a side-by-side comparison with a llama.cpp graph dump.
//!   trace_forward MODEL OUT NPREFILL TOKEN...
//! The first NPREFILL tokens run as one batch, the rest one at a time.
//! Record: name (64 bytes), call (i32), ne (4 × i64; here `[len, 1, 1, 1]`),
//! f32 data.

use std::io::Write;

use switchyard_engine::llm::{KvCache, LlamaModel, LoadedGguf};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 5, "usage: trace_forward MODEL OUT NPREFILL TOKEN...");
    let mut gguf = LoadedGguf::open(std::path::Path::new(&args[1]))?;
    let model = LlamaModel::load(&mut gguf)?;
    let npre: usize = args[3].parse()?;
    let tokens: Vec<u32> = args[4..].iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args[2])?);
    let mut cache = KvCache::default();
    let (mut pos, mut call) = (0usize, 0i32);
    while pos < tokens.len() {
        let n = if pos == 0 { npre } else { 1 };
        let mut records = Vec::new();
        let logits = model.forward_traced(&tokens[pos..pos + n], &mut cache, &mut |name, layer, data| {
            let name = if name == "result_norm" {
                name.to_string()
            } else {
                format!("{name}-{layer}")
            };
            records.push((name, data.to_vec()));
        })?;
        records.push(("logits".into(), logits));
        for (name, data) in records {
            let mut nm = [0u8; 64];
            nm[..name.len()].copy_from_slice(name.as_bytes());
            out.write_all(&nm)?;
            out.write_all(&call.to_le_bytes())?;
            for d in [data.len() as i64, 1, 1, 1] {
                out.write_all(&d.to_le_bytes())?;
            }
            for v in data {
                out.write_all(&v.to_le_bytes())?;
            }
        }
        pos += n;
        call += 1;
    }
    Ok(())
}
