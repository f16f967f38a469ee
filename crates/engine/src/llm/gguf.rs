//! Reading a GGUF file: the llama hyper-parameters, the tokenizer lists and
//! the chat template from its metadata, and the weight tensors.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;

use super::LlmError;

/// Shapes of a llama-architecture model, read from `{arch}.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub architecture: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    pub context_length: usize,
    pub vocab_size: usize,
}

/// An opened GGUF file: metadata parsed, tensors read on demand.
pub struct LoadedGguf {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl LoadedGguf {
    pub fn open(path: &Path) -> Result<Self, LlmError> {
        let io = |source| LlmError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| LlmError::Format(format!("{}: {e}", path.display())))?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub fn tensor(&mut self, name: &str) -> Result<QTensor, LlmError> {
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| LlmError::Format(format!("tensor {name} in {}: {e}", self.path.display())))
    }

    /// Total bytes of all weight tensors, as stored (quantized).
    pub fn weight_bytes(&self) -> u64 {
        self.content
            .tensor_infos
            .values()
            .map(|t| {
                let elems = t.shape.elem_count();
                (elems / t.ggml_dtype.block_size() * t.ggml_dtype.type_size()) as u64
            })
            .sum()
    }

    pub fn string(&self, key: &str) -> Result<&str, LlmError> {
        match self.get(key) {
            Some(v) => v
                .to_string()
                .map(|s| s.as_str())
                .map_err(|e| LlmError::Format(format!("{key}: {e}"))),
            None => Err(LlmError::Format(format!("missing metadata key {key}"))),
        }
    }

    pub fn u32(&self, key: &str) -> Result<u32, LlmError> {
        match self.get(key) {
            Some(v) => v.to_u32().map_err(|e| LlmError::Format(format!("{key}: {e}"))),
            None => Err(LlmError::Format(format!("missing metadata key {key}"))),
        }
    }

    fn f32_or(&self, key: &str, default: f32) -> Result<f32, LlmError> {
        match self.get(key) {
            Some(v) => v.to_f32().map_err(|e| LlmError::Format(format!("{key}: {e}"))),
            None => Ok(default),
        }
    }

    pub fn llama_config(&self) -> Result<LlamaConfig, LlmError> {
        let arch = self.string("general.architecture")?.to_string();
        if arch != "llama" {
            return Err(LlmError::Format(format!(
                "architecture {arch:?} is not supported yet (only llama)"
            )));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let n_embd = self.u32(&key("embedding_length"))? as usize;
        let n_head = self.u32(&key("attention.head_count"))? as usize;
        let n_head_kv = match self.get(&key("attention.head_count_kv")) {
            Some(_) => self.u32(&key("attention.head_count_kv"))? as usize,
            None => n_head,
        };
        if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) || !n_embd.is_multiple_of(n_head) {
            return Err(LlmError::Format(format!(
                "bad head counts: {n_head} heads, {n_head_kv} kv heads, width {n_embd}"
            )));
        }
        let vocab_size = match self.get("tokenizer.ggml.tokens") {
            Some(v) => v
                .to_vec()
                .map_err(|e| LlmError::Format(format!("tokenizer.ggml.tokens: {e}")))?
                .len(),
            None => return Err(LlmError::Format("missing tokenizer.ggml.tokens".into())),
        };
        Ok(LlamaConfig {
            n_layer: self.u32(&key("block_count"))? as usize,
            n_embd,
            n_ff: self.u32(&key("feed_forward_length"))? as usize,
            n_head,
            n_head_kv,
            head_dim: n_embd / n_head,
            rope_base: self.f32_or(&key("rope.freq_base"), 10_000.0)?,
            rms_eps: self.f32_or(&key("attention.layer_norm_rms_epsilon"), 1e-5)?,
            context_length: self.u32(&key("context_length"))? as usize,
            vocab_size,
            architecture: arch,
        })
    }
}
