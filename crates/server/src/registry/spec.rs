//! A registered model version, resolved: its config entry, then its
//! `model.yaml`, then what its files tell (a `.gguf` is a chat model, a
//! `config.json` with `.safetensors` a sentence-transformers embedding
//! model). The entry wins over the manifest, the manifest over inference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::manifest::{self, Manifest};
use super::store;
use crate::config::{
    EmbeddingConfig, GenerationDefaults, ModelConfig, ModelFormat, ModelKind, RegistryConfig, SamplingDefaults,
};

/// Where a version was registered: the config file, or the admin API (then
/// it is stored in the database and restored at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Config,
    Admin,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Admin => "admin",
        }
    }
}

/// A model version ready to be loaded.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// `name` or `name:version`: the registry's key, and the metrics label.
    pub id: String,
    pub name: String,
    pub version: Option<String>,
    pub kind: ModelKind,
    pub format: ModelFormat,
    /// What the engine loads: the GGUF file, or the model folder.
    pub path: PathBuf,
    /// Where the model's files live (and a source is copied to).
    pub folder: PathBuf,
    pub chat_template: Option<String>,
    pub embedding: Option<EmbeddingConfig>,
    pub pinned: bool,
    pub preload: bool,
    pub source: Option<String>,
    pub sha256: BTreeMap<String, String>,
    pub context_length: Option<usize>,
    pub defaults: SamplingDefaults,
    pub labels: BTreeMap<String, String>,
    pub origin: Origin,
    /// The entry as registered, kept for the database.
    pub entry: ModelConfig,
}

impl ModelSpec {
    /// The embedding options in force: the configured ones or the defaults.
    pub fn embedding_config(&self) -> EmbeddingConfig {
        self.embedding.clone().unwrap_or_default()
    }

    /// The server's generation defaults with this model's own over them.
    pub fn generation(&self, base: &GenerationDefaults) -> GenerationDefaults {
        GenerationDefaults {
            temperature: self.defaults.temperature.unwrap_or(base.temperature),
            top_p: self.defaults.top_p.unwrap_or(base.top_p),
            max_tokens: self.defaults.max_tokens.unwrap_or(base.max_tokens),
            ..base.clone()
        }
    }

    /// A spec that cannot be loaded (its resolution failed): listed with
    /// the kind it claims, or as chat.
    pub fn unresolved(entry: &ModelConfig, origin: Origin, cfg: &RegistryConfig) -> Self {
        let folder = folder_of(entry, cfg);
        Self {
            id: entry.key(),
            name: entry.id.clone(),
            version: entry.version.clone(),
            kind: entry.kind.unwrap_or(ModelKind::Chat),
            format: entry.format.unwrap_or(ModelFormat::Gguf),
            path: if entry.path.as_os_str().is_empty() {
                folder.clone()
            } else {
                entry.path.clone()
            },
            folder,
            chat_template: entry.chat_template.clone(),
            embedding: entry.embedding.clone(),
            pinned: entry.pinned,
            preload: entry.preload,
            source: entry.source.clone(),
            sha256: entry.sha256.clone(),
            context_length: entry.context_length,
            defaults: entry.defaults.clone(),
            labels: entry.labels.clone(),
            origin,
            entry: entry.clone(),
        }
    }
}

/// The folder of an entry's files: `path` itself, a file's folder, or the
/// cache folder for a model that gives only a source.
fn folder_of(entry: &ModelConfig, cfg: &RegistryConfig) -> PathBuf {
    let p = &entry.path;
    if p.as_os_str().is_empty() {
        return cfg
            .cache_dir
            .join(&entry.id)
            .join(entry.version.as_deref().unwrap_or("latest"));
    }
    if looks_like_file(p) {
        return p.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    p.clone()
}

fn looks_like_file(p: &Path) -> bool {
    p.is_file() || (!p.is_dir() && p.extension().is_some_and(|e| e == "gguf" || e == "onnx"))
}

/// Resolves an entry: reads the manifest and file names from the local
/// folder, or from the source when nothing is local yet.
pub async fn resolve(entry: &ModelConfig, origin: Origin, cfg: &RegistryConfig) -> Result<ModelSpec, String> {
    let mut spec = ModelSpec::unresolved(entry, origin, cfg);
    let file_given = !entry.path.as_os_str().is_empty() && looks_like_file(&entry.path);
    let local = local_listing(&spec.folder);
    let (names, manifest_text) = match (&local, &entry.source) {
        (Some(listing), _) if !listing.0.is_empty() => listing.clone(),
        (Some(listing), None) => listing.clone(),
        (_, Some(source)) => store::peek(source, store::store_options(&cfg.store_options)).await?,
        _ if file_given => (Vec::new(), None),
        _ => {
            return Err(format!(
                "{} does not exist and the model has no source",
                spec.folder.display()
            ))
        }
    };
    let m = match manifest_text {
        Some(text) => Manifest::parse(&text)?,
        None => Manifest::default(),
    };
    if entry.version.is_none() && m.version.is_some() {
        spec.version = m.version.clone();
        spec.id = format!("{}:{}", spec.name, m.version.as_deref().unwrap_or_default());
    }
    if let Some(n) = &m.name {
        if n != &entry.id {
            tracing::debug!(entry = %entry.id, manifest = %n, "model.yaml names another model; the entry's name is used");
        }
    }
    let wanted: Vec<String> = if m.files.is_empty() {
        names.clone()
    } else {
        m.files.clone()
    };
    let format = entry
        .format
        .or(m.format)
        .or_else(|| file_given.then(|| format_of_file(&entry.path)).flatten())
        .or_else(|| infer_format(&wanted))
        .ok_or_else(|| {
            format!(
                "cannot tell what model {} is: no {}, no .gguf file, no sentence-transformers folder (config.json and .safetensors)",
                spec.folder.display(),
                manifest::FILE_NAME
            )
        })?;
    let kind = match (entry.kind.or(m.kind), format) {
        (Some(k), _) => k,
        (None, ModelFormat::Gguf) => ModelKind::Chat,
        (None, ModelFormat::Safetensors) => ModelKind::Embedding,
        (None, ModelFormat::Onnx) => return Err("image models (ONNX) are not served yet".into()),
    };
    match (kind, format) {
        (ModelKind::Chat, ModelFormat::Gguf) | (ModelKind::Embedding, ModelFormat::Safetensors) => {}
        (k, f) => return Err(format!("a {} model in {} format is not served", k.as_str(), f.as_str())),
    }
    spec.kind = kind;
    spec.format = format;
    spec.path = match kind {
        ModelKind::Chat if file_given => entry.path.clone(),
        ModelKind::Chat => {
            let ggufs: Vec<&String> = wanted.iter().filter(|n| n.ends_with(".gguf")).collect();
            match ggufs.as_slice() {
                [one] => spec.folder.join(one),
                [] => return Err(format!("no .gguf file for {}", spec.id)),
                _ => {
                    return Err(format!(
                        "{} has several .gguf files; name one in `path` or in model.yaml `files`",
                        spec.folder.display()
                    ))
                }
            }
        }
        ModelKind::Embedding => spec.folder.clone(),
    };
    if spec.chat_template.is_none() {
        spec.chat_template = m.chat_template;
    }
    spec.context_length = entry.context_length.or(m.context_length);
    spec.defaults = entry.defaults.or(&m.defaults);
    let mut sha = m.sha256;
    sha.extend(entry.sha256.clone());
    spec.sha256 = sha;
    let mut labels = m.labels;
    labels.extend(entry.labels.clone());
    spec.labels = labels;
    let mut checked = entry.clone();
    checked.kind = Some(kind);
    checked.check_kind_options(&spec.id).map_err(|e| e.to_string())?;
    checked.defaults = spec.defaults.clone();
    checked
        .defaults
        .validate("model.yaml defaults")
        .map_err(|e| e.to_string())?;
    Ok(spec)
}

/// A folder's file names and its manifest, if it exists.
fn local_listing(folder: &Path) -> Option<(Vec<String>, Option<String>)> {
    let dir = std::fs::read_dir(folder).ok()?;
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".partial") && !n.ends_with(".sha256"))
        .collect();
    names.sort();
    let manifest = std::fs::read_to_string(folder.join(manifest::FILE_NAME)).ok();
    Some((names, manifest))
}

fn format_of_file(p: &Path) -> Option<ModelFormat> {
    match p.extension()?.to_str()? {
        "gguf" => Some(ModelFormat::Gguf),
        "onnx" => Some(ModelFormat::Onnx),
        _ => None,
    }
}

/// The format told by file names.
fn infer_format(names: &[String]) -> Option<ModelFormat> {
    let has = |suffix: &str| names.iter().any(|n| n.ends_with(suffix));
    if has(".gguf") {
        Some(ModelFormat::Gguf)
    } else if names.iter().any(|n| n == "config.json") && has(".safetensors") {
        Some(ModelFormat::Safetensors)
    } else if has(".onnx") {
        Some(ModelFormat::Onnx)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn files_tell_the_format() {
        assert_eq!(infer_format(&names(&["a.gguf", "README.md"])), Some(ModelFormat::Gguf));
        assert_eq!(
            infer_format(&names(&["config.json", "model.safetensors", "tokenizer.json"])),
            Some(ModelFormat::Safetensors)
        );
        assert_eq!(infer_format(&names(&["model.safetensors"])), None);
        assert_eq!(infer_format(&names(&["open-nsfw.onnx"])), Some(ModelFormat::Onnx));
    }

    fn entry(path: &Path) -> ModelConfig {
        ModelConfig {
            kind: None,
            ..ModelConfig::new("m", ModelKind::Chat, path)
        }
    }

    #[tokio::test]
    async fn a_manifest_fills_what_the_entry_leaves_out() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else { return };
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).is_ok();
        assert!(write("a.gguf", "x") && write("b.gguf", "y"));
        let cfg = RegistryConfig::default();
        let e = resolve(&entry(dir.path()), Origin::Admin, &cfg)
            .await
            .err()
            .unwrap_or_default();
        assert!(e.contains("several .gguf"), "{e}");
        assert!(write(
            "model.yaml",
            "version: '7'\nfiles: [b.gguf]\ncontext_length: 64\ndefaults: {temperature: 0.1}\nlabels: {a: b}\n"
        ));
        let mut with_label = entry(dir.path());
        with_label.labels.insert("a".into(), "entry".into());
        with_label.defaults.max_tokens = Some(5);
        let spec = resolve(&with_label, Origin::Admin, &cfg)
            .await
            .map_err(|e| e.to_string());
        let Ok(spec) = spec else { panic!("{spec:?}") };
        assert_eq!(spec.id, "m:7");
        assert_eq!(spec.kind, ModelKind::Chat);
        assert_eq!(spec.path, dir.path().join("b.gguf"));
        assert_eq!(spec.context_length, Some(64));
        assert_eq!(spec.defaults.temperature, Some(0.1));
        assert_eq!(spec.defaults.max_tokens, Some(5));
        assert_eq!(spec.labels.get("a").map(String::as_str), Some("entry"));
        assert!(write("model.yaml", "kind: embedding\n"));
        let e = resolve(&entry(dir.path()), Origin::Admin, &cfg)
            .await
            .err()
            .unwrap_or_default();
        assert!(e.contains("embedding model in gguf"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_folder_without_source_is_an_error() {
        let cfg = RegistryConfig::default();
        let e = resolve(&entry(Path::new("/nonexistent/model")), Origin::Config, &cfg).await;
        assert!(e.err().unwrap_or_default().contains("does not exist"));
        let file = ModelConfig::new("m", ModelKind::Chat, "/nonexistent/m.gguf");
        let spec = resolve(&file, Origin::Config, &cfg).await.map_err(|e| e.to_string());
        assert_eq!(spec.map(|s| s.path).ok(), Some(PathBuf::from("/nonexistent/m.gguf")));
    }
}
