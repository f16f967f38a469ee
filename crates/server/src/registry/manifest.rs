//! `model.yaml`: what a model version is, written beside its files. Every
//! field is optional; what it leaves out comes from the config entry or is
//! told by the files (see `spec`).
//!
//! ```yaml
//! name: smollm2
//! version: "3"
//! kind: chat                 # chat | embedding
//! format: gguf               # gguf | safetensors | onnx
//! files: [SmolLM2-135M-Instruct.Q4_1.gguf]
//! sha256: {SmolLM2-135M-Instruct.Q4_1.gguf: "<hex>"}
//! context_length: 4096
//! chat_template: "{% for m in messages %}...{% endfor %}"
//! defaults: {temperature: 0.2, top_p: 0.9, max_tokens: 128}
//! labels: {family: llama, quantization: q4_1}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{ModelFormat, ModelKind, SamplingDefaults};

pub const FILE_NAME: &str = "model.yaml";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: Option<String>,
    pub version: Option<String>,
    pub kind: Option<ModelKind>,
    pub format: Option<ModelFormat>,
    /// The files the model needs; the first `.gguf` is a chat model's weights.
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
    pub context_length: Option<usize>,
    pub chat_template: Option<String>,
    #[serde(default)]
    pub defaults: SamplingDefaults,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses a manifest; the error names the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            let what = e.into_inner();
            if at == "." {
                format!("model.yaml: {what}")
            } else {
                format!("model.yaml `{at}`: {what}")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_manifest_parses() {
        let m = Manifest::parse(
            "name: s\nversion: '3'\nkind: chat\nformat: gguf\nfiles: [a.gguf]\nsha256: {a.gguf: ab}\n\
             context_length: 512\ndefaults: {temperature: 0.2, max_tokens: 9}\nlabels: {team: x}\n",
        );
        let m = m.unwrap_or_default();
        assert_eq!(m.version.as_deref(), Some("3"));
        assert_eq!(m.kind, Some(ModelKind::Chat));
        assert_eq!(m.format, Some(ModelFormat::Gguf));
        assert_eq!(m.files, ["a.gguf"]);
        assert_eq!(m.defaults.max_tokens, Some(9));
        assert_eq!(m.labels.get("team").map(String::as_str), Some("x"));
    }

    #[test]
    fn errors_name_the_field() {
        let e = Manifest::parse("kind: vision\n").err().unwrap_or_default();
        assert!(e.contains("kind"), "{e}");
        let e = Manifest::parse("defaults: {temp: 1}\n").err().unwrap_or_default();
        assert!(e.contains("defaults") && e.contains("temp"), "{e}");
        assert_eq!(Manifest::parse("").ok(), Some(Manifest::default()));
    }
}
