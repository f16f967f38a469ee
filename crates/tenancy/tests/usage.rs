//! The usage meter on SQLite and PostgreSQL: many concurrent records, then
//! shutdown, leave exactly one row each with the right token sums.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use switchyard_db::testing::TestDb;
use switchyard_db::{now_unix, Db};
use switchyard_tenancy::*;
use tokio_util::task::TaskTracker;

const TASKS: u64 = 50;
const PER_TASK: u64 = 10;

fn config() -> Arc<TenancyConfig> {
    // A small queue and batch so the writer is made to wait and to batch.
    let mut c = TenancyConfig {
        usage: UsageConfig {
            batch_size: 64,
            flush_ms: 20,
            queue: 32,
        },
        ..TenancyConfig::default()
    };
    c.prices.insert(
        "small".into(),
        Price {
            prompt_per_1k_micros: 1_000,
            completion_per_1k_micros: 2_000,
        },
    );
    Arc::new(c)
}

fn record(task: u64, i: u64) -> UsageRecord {
    UsageRecord {
        request_id: format!("req-{task}-{i}"),
        tenant_id: format!("t{}", task % 3),
        key_id: "k".into(),
        model: "small".into(),
        deployment: "native".into(),
        prompt_tokens: 10 + i,
        completion_tokens: task,
        latency_ms: 5,
        status_code: 200,
        created_at: now_unix(),
    }
}

async fn exercise(db: &Db) {
    let tracker = TaskTracker::new();
    let quotas = Arc::new(Quotas::new(db.clone(), Duration::from_secs(60)));
    let meter = UsageMeter::start(db.clone(), config(), Some(quotas.clone()), &tracker);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let recorder = meter.recorder();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                recorder.record(record(task, i)).await.unwrap();
                if i % 3 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    // The same request twice (a retry) is one row.
    meter.record(record(0, 0)).await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let written = meter.shutdown().await.unwrap();
    tracker.close();
    tracker.wait().await;
    let n = TASKS * PER_TASK;
    assert_eq!(written, n);

    let month = switchyard_tenancy::period::month_of(now_unix());
    let mut tokens = 0;
    let mut cost = 0;
    for t in 0..3 {
        let (tk, c) = db.usage_totals(&format!("t{t}"), month.start).await.unwrap();
        tokens += tk;
        cost += c;
    }
    let prompt: u64 = (0..TASKS).map(|_| (0..PER_TASK).map(|i| 10 + i).sum::<u64>()).sum();
    let completion: u64 = (0..TASKS).map(|t| t * PER_TASK).sum();
    assert_eq!(tokens as u64, prompt + completion);
    // Cost per record, rounded: (prompt·1000 + completion·2000) / 1000.
    let expected: u64 = (0..TASKS)
        .flat_map(|t| {
            (0..PER_TASK).map(move |i| {
                Price {
                    prompt_per_1k_micros: 1_000,
                    completion_per_1k_micros: 2_000,
                }
                .cost_micros(10 + i, t)
            })
        })
        .sum();
    assert_eq!(cost as u64, expected);
    let admin = Admin::new(db.clone(), config());
    let groups = admin
        .usage(&UsageQuery {
            tenant: None,
            from: month.start,
            to: month.end,
            group_by: GroupBy::Model,
        })
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].requests, n);
}

#[tokio::test]
async fn after_shutdown_records_are_refused_not_lost_silently() {
    let t = TestDb::sqlite().unwrap();
    let db = Db::open(&t.url, 2).await.unwrap();
    let tracker = TaskTracker::new();
    let meter = UsageMeter::start(db.clone(), config(), None, &tracker);
    let late = meter.recorder();
    meter.record(record(1, 1)).await.unwrap();
    assert_eq!(meter.shutdown().await.unwrap(), 1);
    assert!(matches!(late.record(record(1, 2)).await, Err(UsageError::Closed)));
    db.close().await;
}

/// Without shutdown: a lone record is written once it has waited
/// `flush_ms`, and a burst as soon as a batch is full.
#[tokio::test]
async fn records_are_written_by_age_and_by_batch() {
    let t = TestDb::sqlite().unwrap();
    let db = Db::open(&t.url, 2).await.unwrap();
    let tracker = TaskTracker::new();
    let mut cfg = (*config()).clone();
    // Far longer than the test waits: only a full batch can be written in time.
    cfg.usage = UsageConfig {
        batch_size: 8,
        flush_ms: 60_000,
        queue: 100,
    };
    let meter = UsageMeter::start(db.clone(), Arc::new(cfg), None, &tracker);
    let written = |n: i64| {
        let db = db.clone();
        async move {
            for _ in 0..500 {
                if db.usage_totals("t1", 0).await.unwrap().0 >= n {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    // Task 1's records go to tenant t1, with 10 + i prompt and 1 completion token each.
    for i in 0..8 {
        meter.record(record(1, i)).await.unwrap();
    }
    let batch: i64 = (0..8).map(|i| 11 + i).sum();
    assert!(
        written(batch).await,
        "a full batch is written without waiting for flush_ms"
    );
    meter.shutdown().await.unwrap();

    let mut cfg = (*config()).clone();
    cfg.usage.flush_ms = 50;
    let meter = UsageMeter::start(db.clone(), Arc::new(cfg), None, &tracker);
    meter.record(record(1, 100)).await.unwrap();
    assert!(written(batch + 111).await, "a lone record is written after flush_ms");
    meter.shutdown().await.unwrap();
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_meter_on_sqlite() {
    let t = TestDb::sqlite().unwrap();
    let db = Db::open(&t.url, 4).await.unwrap();
    exercise(&db).await;
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usage_meter_on_postgres() {
    let t = TestDb::postgres()
        .await
        .expect("PostgreSQL on SWITCHYARD_TEST_POSTGRES");
    let db = Db::open(&t.url, 4).await.unwrap();
    exercise(&db).await;
    db.close().await;
    t.drop_db().await.unwrap();
}
