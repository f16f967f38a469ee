//! `switchyard bench http`: closed-loop load on an OpenAI-compatible
//! `/v1/embeddings` endpoint. `--concurrency` clients each send requests of
//! `--inputs` corpus texts back to back until the corpus has been sent once;
//! the figure is corpus sentences / wall time, with per-request latency
//! percentiles. The same client measures Switchyard and the anchors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::Target,
    /// Corpus from scripts/bench/make-corpus.py.
    #[arg(long)]
    corpus: std::path::PathBuf,
    /// Texts per request.
    #[arg(long, default_value_t = 1)]
    inputs: usize,
    /// Send only the first N texts of the corpus (0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
}

struct Rep {
    secs: f64,
    latencies_ms: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut corpus = super::read_corpus(&args.corpus)?;
        if args.limit > 0 {
            corpus.truncate(args.limit);
        }
        let requests: Arc<Vec<serde_json::Value>> = Arc::new(
            corpus
                .chunks(args.inputs.max(1))
                .map(|texts| serde_json::json!({"model": args.target.model, "input": texts}))
                .collect(),
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.target.timeout_s))
            .pool_max_idle_per_host(args.target.concurrency.max(1))
            .build()?;
        let url = args.target.endpoint("/embeddings");
        let load = Load {
            client,
            url,
            key: args.target.api_key.clone(),
            requests,
            concurrency: args.target.concurrency.max(1),
        };
        // Warm-up: one round of requests, untimed (connections, lazy loads).
        load.run(load.concurrency.min(load.requests.len())).await;
        let mut rates = Vec::new();
        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        for rep in 0..args.repetitions.max(1) {
            let r = load.run(load.requests.len()).await;
            let mut lat = r.latencies_ms;
            lat.sort_by(f64::total_cmp);
            let rate = corpus.len() as f64 / r.secs;
            let (p50, p99) = (super::percentile(&lat, 0.5), super::percentile(&lat, 0.99));
            println!(
                "{}",
                serde_json::json!({"rep": rep, "sentences_per_s": rate, "p50_ms": p50, "p99_ms": p99, "errors": r.errors, "first_error": r.first_error})
            );
            anyhow::ensure!(r.errors == 0, "{} requests failed, first: {:?}", r.errors, r.first_error);
            rates.push(rate);
            p50s.push(p50);
            p99s.push(p99);
        }
        println!(
            "{}",
            serde_json::json!({"median": true, "concurrency": load.concurrency, "inputs": args.inputs, "sentences": corpus.len(), "sentences_per_s": super::median(rates), "p50_ms": super::median(p50s), "p99_ms": super::median(p99s)})
        );
        Ok(())
    })
}

struct Load {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    requests: Arc<Vec<serde_json::Value>>,
    concurrency: usize,
}

impl Load {
    /// Sends the first `count` requests with `concurrency` clients.
    async fn run(&self, count: usize) -> Rep {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..self.concurrency {
            let (client, url, key, requests, next) = (
                self.client.clone(),
                self.url.clone(),
                self.key.clone(),
                self.requests.clone(),
                next.clone(),
            );
            workers.spawn(async move {
                let mut lat = Vec::new();
                let mut errors = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = requests.get(i).filter(|_| i < count) else {
                        break;
                    };
                    let sent = Instant::now();
                    let mut req = client.post(&url).json(body);
                    if let Some(k) = &key {
                        req = req.bearer_auth(k);
                    }
                    match send(req).await {
                        Ok(()) => lat.push(sent.elapsed().as_secs_f64() * 1e3),
                        Err(e) => errors.push(e),
                    }
                }
                (lat, errors)
            });
        }
        let mut rep = Rep {
            secs: 0.0,
            latencies_ms: Vec::new(),
            errors: 0,
            first_error: None,
        };
        while let Some(done) = workers.join_next().await {
            match done {
                Ok((lat, errors)) => {
                    rep.latencies_ms.extend(lat);
                    rep.errors += errors.len();
                    rep.first_error = rep.first_error.or(errors.into_iter().next());
                }
                Err(e) => {
                    rep.errors += 1;
                    rep.first_error = Some(e.to_string());
                }
            }
        }
        rep.secs = start.elapsed().as_secs_f64();
        rep
    }
}

/// One request: success means a 200 whose body is read to the end.
async fn send(req: reqwest::RequestBuilder) -> Result<(), String> {
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(())
}
