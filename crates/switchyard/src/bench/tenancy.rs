//! `switchyard bench tenancy`: what tenancy adds to a request, in process on
//! a real database — key check + rate limit + budget check per request
//! (µs, with the key cache warm and with it off), and usage records
//! written per second through the batching meter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_db::Db;
use switchyard_tenancy::{
    Admin, Authenticator, Budgets, Limiter, Limits, NewKey, NewTenant, Quotas, Scope, TenancyConfig, UsageMeter,
    UsageRecord,
};

#[derive(clap::Args)]
pub struct Args {
    /// Database URL (a fresh one: the bench writes tenants, keys and usage).
    #[arg(long)]
    db: String,
    /// Requests checked per measurement.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Usage records written.
    #[arg(long, default_value_t = 50_000)]
    records: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let db = Db::open(&args.db, 8).await?;
        let backend = db.backend().as_str();
        let cfg = Arc::new(TenancyConfig::default());
        let admin = Admin::new(db.clone(), cfg.clone());
        let stamp = uuid::Uuid::new_v4().simple().to_string();
        let tenant = admin
            .create_tenant(&NewTenant {
                name: format!("bench-{stamp}"),
                tier: Some("enterprise".into()),
                budgets: Budgets {
                    monthly_tokens: Some(u64::MAX / 2),
                    monthly_cost_micros: None,
                },
                models: Vec::new(),
            })
            .await?;
        let key = admin
            .create_key(&NewKey {
                tenant: tenant.id.clone(),
                name: "bench".into(),
                scopes: vec![Scope::Inference],
                expires_at: None,
                overrides: Limits {
                    requests_per_minute: Some(1 << 40),
                    requests_per_hour: None,
                    tokens_per_minute: Some(1 << 40),
                },
            })
            .await?;
        let header = format!("Bearer {}", key.secret.expose());
        let limiter = Limiter::from_config(&cfg.limiter).await?;
        let quotas = Quotas::new(db.clone(), Duration::from_secs(cfg.quota_cache_secs));
        for (cache, secs) in [("warm", cfg.key_cache_secs), ("off", 0)] {
            let auth = Authenticator::new(
                db.clone(),
                Arc::new(TenancyConfig {
                    key_cache_secs: secs,
                    ..(*cfg).clone()
                }),
            );
            let mut us = Vec::with_capacity(args.requests);
            for _ in 0..args.requests {
                let t = Instant::now();
                let p = auth.authenticate(Some(&header)).await?;
                limiter
                    .acquire(&p.key_id, &p.limits)
                    .await?
                    .check()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                quotas.check(&p.tenant_id, &p.budgets, 0).await?;
                us.push(t.elapsed().as_secs_f64() * 1e6);
            }
            us.sort_by(f64::total_cmp);
            println!(
                "{}",
                json!({"bench": "auth+limits+quota", "db": backend, "key_cache": cache, "requests": args.requests,
                    "p50_us": super::percentile(&us, 0.5), "p99_us": super::percentile(&us, 0.99)})
            );
        }
        let tracker = tokio_util::task::TaskTracker::new();
        let meter = UsageMeter::start(db.clone(), cfg.clone(), None, &tracker);
        let started = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let (rec, tenant, key_id, stamp) =
                    (meter.recorder(), tenant.id.clone(), key.info.id.clone(), stamp.clone());
                let n = args.records / 8;
                tokio::spawn(async move {
                    for i in 0..n {
                        let r = UsageRecord {
                            request_id: format!("{stamp}-{w}-{i}"),
                            tenant_id: tenant.clone(),
                            key_id: key_id.clone(),
                            model: "bench".into(),
                            deployment: "bench".into(),
                            prompt_tokens: 10,
                            completion_tokens: 20,
                            latency_ms: 5,
                            status_code: 200,
                            created_at: switchyard_db::now_unix(),
                        };
                        rec.record(r).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let written = meter.shutdown().await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"bench": "usage records", "db": backend, "records": written, "seconds": secs,
                "records_per_s": written as f64 / secs})
        );
        db.close().await;
        anyhow::Ok(())
    })
}
