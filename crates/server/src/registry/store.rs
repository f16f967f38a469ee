//! The model store: a model's files mirrored from a folder URL (`file://`,
//! `s3://`, `gs://`, `az://`, `https://`) into its local cache folder through
//! the `object_store` crate, checked against the SHA-256 sums the config
//! gives. A file lands atomically (written to `NAME.partial`, hashed while
//! written, renamed), failed transfers are retried, and files already in the
//! cache with the right size (and sum) are kept, so a restart downloads
//! nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Attempts per file before the download fails.
const ATTEMPTS: u32 = 3;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FetchReport {
    pub downloaded: usize,
    pub reused: usize,
    pub bytes: u64,
}

/// Bytes of the current download, for the admin API and the CLI's progress.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

/// Options for the store builders: the `AWS_*`, `GOOGLE_*` and `AZURE_*`
/// environment variables (as `object_store` names them, lowercased), then
/// the configured ones.
pub fn store_options(configured: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut opts: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_"))
        .map(|(k, v)| (k.to_lowercase(), v))
        .collect();
    opts.extend(configured.iter().map(|(k, v)| (k.clone(), v.clone())));
    opts
}

/// Mirrors the folder at `source` into `dest`.
pub async fn fetch(
    source: &str,
    dest: &Path,
    sha256: &BTreeMap<String, String>,
    options: Vec<(String, String)>,
    progress: &Progress,
) -> Result<FetchReport, String> {
    let (store, files) = open(source, options).await?;
    if files.is_empty() {
        return Err(format!("model source `{source}` holds no files"));
    }
    for name in sha256.keys() {
        if !files.iter().any(|(rel, _)| rel == name) {
            return Err(format!(
                "`{name}` has a checksum in the config but is not in `{source}`"
            ));
        }
    }
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut report = FetchReport::default();
    let mut todo = Vec::new();
    for (rel, meta) in &files {
        let want = sha256.get(rel).map(|s| s.to_lowercase());
        if cached(&dest.join(rel), meta.size, want.as_deref()).await {
            report.reused += 1;
        } else {
            todo.push((rel, meta, want));
        }
    }
    progress.done.store(0, Ordering::Relaxed);
    progress
        .total
        .store(todo.iter().map(|t| t.1.size).sum(), Ordering::Relaxed);
    for (rel, meta, want) in todo {
        let local = dest.join(rel);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let before = progress.done.load(Ordering::Relaxed);
            match download(store.as_ref(), meta, &local, want.as_deref(), progress).await {
                Ok(()) => {
                    last.clear();
                    break;
                }
                Err(e) => {
                    progress.done.store(before, Ordering::Relaxed);
                    tracing::warn!(file = %rel, attempt, error = %e, "model download failed");
                    last = e;
                    if last.starts_with("checksum mismatch") {
                        break; // the bytes arrived; retrying gets the same ones
                    }
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
            }
        }
        if !last.is_empty() {
            return Err(format!("{rel}: {last}"));
        }
        report.downloaded += 1;
        report.bytes += meta.size;
    }
    Ok(report)
}

/// The store behind a folder URL, and the files under it.
async fn open(
    source: &str,
    options: Vec<(String, String)>,
) -> Result<(Box<dyn ObjectStore>, Vec<(String, ObjectMeta)>), String> {
    let url = url::Url::parse(source).map_err(|e| format!("model source `{source}` is not a URL: {e}"))?;
    let (store, prefix) =
        object_store::parse_url_opts(&url, options).map_err(|e| format!("model source `{source}`: {e}"))?;
    let files = list(store.as_ref(), &prefix)
        .await
        .map_err(|e| format!("cannot list `{source}`: {e}"))?;
    Ok((store, files))
}

/// Files under `prefix` as (path relative to it, metadata); a URL naming
/// one object gives that object.
async fn list(store: &dyn ObjectStore, prefix: &StorePath) -> object_store::Result<Vec<(String, ObjectMeta)>> {
    let mut out = Vec::new();
    let mut stream = store.list(Some(prefix));
    while let Some(meta) = stream.next().await {
        let meta = meta?;
        let rel: Vec<String> = match meta.location.prefix_match(prefix) {
            Some(parts) => parts.map(|p| p.as_ref().to_string()).collect(),
            None => continue,
        };
        if !rel.is_empty() {
            out.push((rel.join("/"), meta));
        }
    }
    if out.is_empty() {
        if let Ok(meta) = store.head(prefix).await {
            let name = prefix.filename().unwrap_or("model").to_string();
            out.push((name, meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `local` with `suffix` appended to its file name.
fn beside(local: &Path, suffix: &str) -> PathBuf {
    let mut name = local.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    local.with_file_name(name)
}

fn sidecar(local: &Path) -> PathBuf {
    beside(local, ".sha256")
}

/// Whether `local` is already the right file: its size, and the sum the
/// download recorded beside it when a sum is expected.
async fn cached(local: &Path, size: u64, want: Option<&str>) -> bool {
    let Ok(meta) = tokio::fs::metadata(local).await else {
        return false;
    };
    if meta.len() != size {
        return false;
    }
    match want {
        None => true,
        Some(w) => tokio::fs::read_to_string(sidecar(local))
            .await
            .is_ok_and(|got| got.trim() == w),
    }
}

async fn download(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    local: &Path,
    want: Option<&str>,
    progress: &Progress,
) -> Result<(), String> {
    if let Some(dir) = local.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(|e| e.to_string())?;
    }
    let partial = beside(local, ".partial");
    // A partial file from an earlier attempt (or run) is resumed: its bytes
    // are hashed again and the rest is asked for from that offset, on the
    // condition that the object has not changed since (its ETag).
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut options = GetOptions::default();
    let kept = tokio::fs::metadata(&partial).await.map_or(0, |m| m.len());
    if kept > 0 && kept < meta.size {
        (hasher, bytes) = hash_file(&partial).await?;
        options.range = Some(GetRange::Offset(bytes));
        options.if_match = meta.e_tag.clone();
        progress.done.fetch_add(bytes, Ordering::Relaxed);
        tracing::info!(file = %partial.display(), bytes, "resuming download");
    }
    let mut file = if bytes > 0 {
        tokio::fs::OpenOptions::new().append(true).open(&partial).await
    } else {
        tokio::fs::File::create(&partial).await
    }
    .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    let result = match store.get_opts(&meta.location, options).await {
        Ok(r) => r,
        Err(e) => {
            // Cannot resume (changed object, no range support): start over.
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e.to_string());
        }
    };
    let mut stream = result.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        progress.done.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        file.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    file.sync_all().await.map_err(|e| e.to_string())?;
    drop(file);
    if bytes != meta.size {
        return Err(format!("truncated transfer: {bytes} of {} bytes", meta.size));
    }
    let got = format!("{:x}", hasher.finalize());
    if let Some(w) = want {
        if got != w {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(format!("checksum mismatch: expected sha256 {w}, got {got}"));
        }
    }
    tokio::fs::write(sidecar(local), &got)
        .await
        .map_err(|e| e.to_string())?;
    tokio::fs::rename(&partial, local).await.map_err(|e| e.to_string())
}

/// SHA-256 state and length of a file, read in chunks off the async threads.
async fn hash_file(path: &Path) -> Result<(Sha256, u64), String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut hasher = Sha256::new();
        let n = std::io::copy(&mut file, &mut hasher).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok((hasher, n))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Checks files of a local model folder against the configured sums.
pub async fn verify_local(dir: &Path, sha256: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, want) in sha256 {
        let got = format!("{:x}", hash_file(&dir.join(name)).await?.0.finalize());
        if got != want.to_lowercase() {
            return Err(format!(
                "checksum mismatch for {name}: expected sha256 {want}, got {got}"
            ));
        }
    }
    Ok(())
}

/// What a source holds before anything is downloaded: its file names, and
/// the text of its `model.yaml` when it has one.
pub async fn peek(source: &str, options: Vec<(String, String)>) -> Result<(Vec<String>, Option<String>), String> {
    let (store, files) = open(source, options).await?;
    let Some((_, meta)) = files.iter().find(|(rel, _)| rel == super::manifest::FILE_NAME) else {
        return Ok((files.into_iter().map(|(rel, _)| rel).collect(), None));
    };
    let bytes = store
        .get(&meta.location)
        .await
        .map_err(|e| format!("cannot read {}: {e}", meta.location))?
        .bytes()
        .await
        .map_err(|e| format!("cannot read {}: {e}", meta.location))?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| "model.yaml is not UTF-8".to_string())?;
    Ok((files.into_iter().map(|(rel, _)| rel).collect(), Some(text)))
}
