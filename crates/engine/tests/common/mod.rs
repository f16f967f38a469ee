//! Shared by the engine's model tests: where the fetched default model is.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

use std::path::PathBuf;

/// The default chat model, fetched by `scripts/fetch-models.sh`. Tests fail
/// (never skip) when it is missing, saying how to get it.
pub fn smollm2_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        path.display()
    );
    path
}

/// The default embedding model folder (all-MiniLM-L6-v2), fetched by
/// `scripts/fetch-models.sh`. Fails, never skips, when it is missing.
#[allow(dead_code)] // not every test binary embeds
pub fn minilm_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("models/all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run scripts/fetch-models.sh",
        dir.display()
    );
    dir
}
