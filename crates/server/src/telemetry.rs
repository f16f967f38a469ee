//! Logs and metrics: JSON (or plain) logs carrying the request id, and the
//! Prometheus recorder. Metric names and labels are listed in docs/metrics.md.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use switchyard_engine::embed::batcher::{BatchObserver, BatchReport};
use switchyard_engine::llm::{StepObserver, StepReport};

use crate::config::LogFormat;

pub const HTTP_REQUESTS: &str = "switchyard_http_requests_total";
pub const HTTP_DURATION: &str = "switchyard_http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "switchyard_http_requests_in_flight";
pub const TTFT: &str = "switchyard_time_to_first_token_seconds";
pub const PROMPT_TOKENS: &str = "switchyard_prompt_tokens_total";
pub const GENERATED_TOKENS: &str = "switchyard_generated_tokens_total";
pub const GENERATION_DURATION: &str = "switchyard_generation_duration_seconds";
pub const QUEUE_DEPTH: &str = "switchyard_engine_queue_depth";
pub const ENGINE_TOKENS: &str = "switchyard_engine_generated_tokens_total";
pub const ENGINE_CANCELLED: &str = "switchyard_engine_generations_cancelled_total";
pub const ENGINE_FINISHED: &str = "switchyard_engine_generations_finished_total";
/// Batched forward steps, and sequences summed over them: their ratio is the
/// mean batch size of continuous batching.
pub const ENGINE_STEPS: &str = "switchyard_engine_steps_total";
pub const ENGINE_STEP_SEQUENCES: &str = "switchyard_engine_step_sequences_total";
pub const ENGINE_PEAK_BATCH: &str = "switchyard_engine_peak_batch_sequences";
/// Per step: sequences in it, prompt tokens fed, and its duration.
pub const ENGINE_STEP_BATCH: &str = "switchyard_engine_step_batch_sequences";
pub const ENGINE_STEP_PROMPT_TOKENS: &str = "switchyard_engine_step_prompt_tokens";
pub const ENGINE_STEP_DURATION: &str = "switchyard_engine_step_duration_seconds";
/// Time between consecutive tokens of one sequence.
pub const INTER_TOKEN_LATENCY: &str = "switchyard_inter_token_latency_seconds";
pub const ENGINE_RUNNING: &str = "switchyard_engine_running_sequences";
pub const ENGINE_WAITING: &str = "switchyard_engine_waiting_sequences";
pub const ENGINE_PREEMPTED: &str = "switchyard_engine_preemptions_total";
pub const KV_BLOCKS_USED: &str = "switchyard_kv_cache_blocks_used";
pub const KV_BLOCKS_TOTAL: &str = "switchyard_kv_cache_blocks_total";
pub const PREFIX_CACHE_BLOCKS: &str = "switchyard_prefix_cache_blocks";
/// Prompt tokens looked up in the prefix cache, and those found: their ratio
/// is the hit rate.
pub const PREFIX_QUERIED: &str = "switchyard_prefix_cache_queried_tokens_total";
pub const PREFIX_HIT: &str = "switchyard_prefix_cache_hit_tokens_total";
pub const REJECTED: &str = "switchyard_requests_rejected_total";
/// Model loads started, and the estimated weight bytes each model holds.
pub const MODEL_LOADS: &str = "switchyard_model_loads_total";
pub const MODEL_RESIDENT_BYTES: &str = "switchyard_model_resident_bytes";
/// 1 for the lifecycle state a model is in (`state` label), 0 for the others.
pub const MODEL_STATE: &str = "switchyard_model_state";
pub const EMBED_DURATION: &str = "switchyard_embedding_duration_seconds";
pub const EMBED_BATCH_SIZE: &str = "switchyard_embedding_batch_size";
pub const EMBED_BATCH_REQUESTS: &str = "switchyard_embedding_batch_requests";
pub const EMBED_BATCH_TOKENS: &str = "switchyard_embedding_batch_tokens";
pub const EMBED_BATCH_DURATION: &str = "switchyard_embedding_batch_duration_seconds";
pub const EMBED_TOKENS: &str = "switchyard_embedding_tokens_total";
/// Requests forwarded to an upstream route, by route, answering deployment
/// and outcome (`ok`, `client_error`, `stream_error`, `cancelled`, or the
/// gateway error code).
pub const UPSTREAM_REQUESTS: &str = "switchyard_upstream_requests_total";
/// From the request to the answer's end (a stream's last chunk).
pub const UPSTREAM_DURATION: &str = "switchyard_upstream_request_duration_seconds";
/// Per upstream endpoint: 0 closed, 1 half-open, 2 open.
pub const UPSTREAM_BREAKER_STATE: &str = "switchyard_upstream_breaker_state";
pub const UPSTREAM_BREAKER_OPENED: &str = "switchyard_upstream_breaker_opened_total";
pub const UPSTREAM_OUTSTANDING: &str = "switchyard_upstream_outstanding_requests";

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// An embedding of a short text takes a few milliseconds: finer at the low end.
const FAST_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
const TOKEN_BUCKETS: &[f64] = &[
    16.0, 64.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).ok()?;
            for (name, buckets) in [
                (EMBED_DURATION, FAST_LATENCY_BUCKETS),
                (EMBED_BATCH_DURATION, FAST_LATENCY_BUCKETS),
                (EMBED_BATCH_SIZE, COUNT_BUCKETS),
                (EMBED_BATCH_REQUESTS, COUNT_BUCKETS),
                (EMBED_BATCH_TOKENS, TOKEN_BUCKETS),
                (ENGINE_STEP_BATCH, COUNT_BUCKETS),
                (ENGINE_STEP_PROMPT_TOKENS, TOKEN_BUCKETS),
                (ENGINE_STEP_DURATION, FAST_LATENCY_BUCKETS),
                (INTER_TOKEN_LATENCY, FAST_LATENCY_BUCKETS),
            ] {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.to_string()), buckets)
                    .ok()?;
            }
            let handle = builder.install_recorder().ok()?;
            start_upkeep(handle.clone());
            Some(handle)
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The recorder keeps every histogram sample until upkeep folds it into
/// the buckets; `install_recorder` (unlike the exporter's own HTTP
/// listener) leaves that to its caller. Without it, a server nobody
/// scrapes grows by 8 bytes per sample — two samples a request — and the
/// next scrape pays for all of them at once. A plain thread: it must run
/// whichever runtime (or none) built the handle.
fn start_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "no metrics upkeep thread: histogram samples wait for the next scrape");
    }
}

/// Sets up logging once. JSON lines by default, with the request's span
/// fields (its id) on every line. Lines are buffered in memory and written
/// to stderr by a background thread every few milliseconds
/// ([`crate::logwriter`]); none is dropped. Keep the guard until exit:
/// dropping it writes what is buffered.
pub fn init_logging(format: LogFormat) -> crate::logwriter::FlushGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = crate::logwriter::LogBuffer::start();
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer.clone());
    let installed = match format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Plain => builder.try_init(),
    };
    if installed.is_ok() && !(ansi && format == LogFormat::Plain) {
        crate::access::write_to(writer, format);
    }
    guard
}

/// Metric handles by their label values, built once per thread. Building a
/// metric's key (owned label strings, a hash, a registry lookup) on every
/// request showed in the gateway's profile, and so did a map shared by
/// the I/O threads (its lock, and the handles' reference counts, moved
/// between cores on every request). Each thread keeps its own map in a
/// `thread_local!` of this type; the registry hands every thread the same
/// metric. Label values must be bounded (route templates, statuses,
/// configured names), as for any metric.
pub type LocalHandles<K, H> = std::cell::RefCell<hashbrown::HashMap<K, H>>;

/// Runs `f` with the handles for `key` in this thread's `cache`, made
/// (with their owned key) by `make` the first time. `key` is a borrowed
/// form of the stored key ([`hashbrown::Equivalent`]), so a lookup builds
/// nothing.
pub fn with_handles<K, Q, H, R>(
    cache: &'static std::thread::LocalKey<LocalHandles<K, H>>,
    key: &Q,
    make: impl FnOnce(&Q) -> (K, H),
    f: impl FnOnce(&H) -> R,
) -> R
where
    K: std::hash::Hash + Eq,
    Q: std::hash::Hash + hashbrown::Equivalent<K> + ?Sized,
{
    cache.with(|c| {
        if let Some(h) = c.borrow().get(key) {
            return f(h);
        }
        let (k, h) = make(key);
        let r = f(&h);
        c.borrow_mut().insert(k, h);
        r
    })
}

/// Records each forward pass of an embedding model's batcher.
pub struct EmbedMetrics {
    model: String,
}

impl EmbedMetrics {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
        }
    }
}

impl BatchObserver for EmbedMetrics {
    fn batch_done(&self, r: &BatchReport) {
        let model = self.model.clone();
        metrics::histogram!(EMBED_BATCH_SIZE, "model" => model.clone()).record(r.inputs as f64);
        metrics::histogram!(EMBED_BATCH_REQUESTS, "model" => model.clone()).record(r.requests as f64);
        metrics::histogram!(EMBED_BATCH_TOKENS, "model" => model.clone()).record(r.tokens as f64);
        metrics::histogram!(EMBED_BATCH_DURATION, "model" => model.clone()).record(r.elapsed.as_secs_f64());
        metrics::counter!(EMBED_TOKENS, "model" => model).increment(r.tokens as u64);
    }
}

/// Records each forward step of a chat model's engine.
pub struct EngineMetrics {
    model: String,
}

impl EngineMetrics {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
        }
    }
}

impl StepObserver for EngineMetrics {
    fn step_done(&self, r: &StepReport) {
        let model = self.model.clone();
        metrics::histogram!(ENGINE_STEP_BATCH, "model" => model.clone()).record(r.sequences as f64);
        if r.prompt_tokens > 0 {
            metrics::histogram!(ENGINE_STEP_PROMPT_TOKENS, "model" => model.clone()).record(r.prompt_tokens as f64);
        }
        metrics::histogram!(ENGINE_STEP_DURATION, "model" => model.clone()).record(r.elapsed.as_secs_f64());
        let itl = metrics::histogram!(INTER_TOKEN_LATENCY, "model" => model);
        for gap in &r.token_gaps {
            itl.record(gap.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{with_handles, LocalHandles};

    #[derive(Hash)]
    struct Borrowed<'a>(&'a str, u16);

    impl hashbrown::Equivalent<(String, u16)> for Borrowed<'_> {
        fn equivalent(&self, key: &(String, u16)) -> bool {
            self.0 == key.0 && self.1 == key.1
        }
    }

    thread_local! {
        static CACHE: LocalHandles<(String, u16), usize> = LocalHandles::default();
    }

    /// A borrowed key finds what its owned form stored; a new key makes anew.
    #[test]
    fn handles_are_made_once_per_key_and_found_by_a_borrowed_key() {
        let made = std::cell::Cell::new(0);
        let get = |route: &str, status: u16| {
            with_handles(
                &CACHE,
                &Borrowed(route, status),
                |k| {
                    made.set(made.get() + 1);
                    ((k.0.to_string(), k.1), made.get())
                },
                |h| *h,
            )
        };
        assert_eq!(
            (get("/a", 200), get("/a", 200), get("/a", 500), get("/b", 200)),
            (1, 1, 2, 3)
        );
        assert_eq!((get("/a", 500), get("/b", 200)), (2, 3));
        assert_eq!(made.get(), 3);
        // Another thread has its own map.
        std::thread::scope(|s| {
            s.spawn(|| CACHE.with(|c| assert!(c.borrow().is_empty())))
                .join()
                .unwrap()
        });
    }

    /// Every metric this module names is documented in docs/metrics.md.
    #[test]
    fn every_metric_is_documented() {
        let doc = include_str!("../../../docs/metrics.md");
        let source = include_str!("telemetry.rs");
        let names: Vec<&str> = source
            .lines()
            .filter(|l| l.starts_with("pub const ") && l.contains("\"switchyard_"))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        assert!(names.len() > 30, "{names:?}");
        for name in names {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is missing from docs/metrics.md"
            );
        }
    }
}
