//! Tenants, keys, authentication, quotas and usage reports on a real
//! SQLite file and a real PostgreSQL database: one body, both backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use switchyard_db::testing::TestDb;
use switchyard_db::{now_unix, Db, UsageRow};
use switchyard_tenancy::*;

fn config() -> Arc<TenancyConfig> {
    let mut c = TenancyConfig::default();
    c.tiers.get_mut("starter").unwrap().models = vec!["small".into()];
    Arc::new(c)
}

fn usage(id: &str, tenant: &str, model: &str, at: i64, tokens: (i64, i64), cost: i64) -> UsageRow {
    UsageRow {
        request_id: id.into(),
        tenant_id: tenant.into(),
        key_id: "k".into(),
        model: model.into(),
        deployment: "native".into(),
        prompt_tokens: tokens.0,
        completion_tokens: tokens.1,
        latency_ms: 12,
        status_code: 200,
        cost_micros: cost,
        created_at: at,
    }
}

/// Returns every plaintext key it made, for the log check.
async fn keys_and_auth(db: &Db) -> Vec<String> {
    let cfg = config();
    let admin = Admin::new(db.clone(), cfg.clone());
    let auth = Authenticator::new(db.clone(), cfg.clone());

    let a = admin
        .create_tenant(&NewTenant {
            name: "acme".into(),
            ..NewTenant::default()
        })
        .await
        .unwrap();
    assert_eq!(a.tier, "starter");
    let dup = admin
        .create_tenant(&NewTenant {
            name: "acme".into(),
            ..NewTenant::default()
        })
        .await;
    assert!(matches!(dup, Err(AdminError::Conflict { .. })), "{dup:?}");
    let bad = admin
        .create_tenant(&NewTenant {
            name: "b".into(),
            tier: Some("gold".into()),
            ..NewTenant::default()
        })
        .await;
    assert!(
        matches!(bad, Err(AdminError::InvalidInput { field: "tier", .. })),
        "{bad:?}"
    );
    let b = admin
        .create_tenant(&NewTenant {
            name: "beta".into(),
            tier: Some("business".into()),
            models: vec!["big".into()],
            ..NewTenant::default()
        })
        .await
        .unwrap();
    assert_eq!(admin.tenants().await.unwrap().len(), 2);

    let made = admin
        .create_key(&NewKey {
            tenant: "acme".into(),
            name: "ci".into(),
            scopes: vec![Scope::Inference],
            expires_at: None,
            overrides: Limits {
                requests_per_minute: Some(7),
                ..Limits::default()
            },
        })
        .await
        .unwrap();
    let header = format!("Bearer {}", made.secret.expose());
    let p = auth.authenticate(Some(&header)).await.unwrap();
    assert_eq!(p.tenant_id, a.id);
    assert_eq!(p.key_id, made.info.id);
    assert!(p.can(Scope::Inference) && !p.can(Scope::Admin));
    assert!(matches!(
        p.require(Scope::Admin),
        Err(AccessError::MissingScope(Scope::Admin))
    ));
    // Tier limits with the key's override; the tier's allow-list.
    assert_eq!(
        p.limits,
        Limits {
            requests_per_minute: Some(7),
            requests_per_hour: Some(100),
            tokens_per_minute: None
        }
    );
    assert!(p.may_use("small") && !p.may_use("big"));
    assert!(p.may_read_tenant(&a.id).is_ok());
    assert_eq!(p.may_read_tenant(&b.id), Err(AccessError::OtherTenant));
    // A bare key works too (x-api-key).
    assert!(auth.authenticate(Some(made.secret.expose())).await.is_ok());

    // Each failure is its own kind, and no message holds the key.
    let (public, secret) = made.secret.expose().split_once('.').unwrap();
    let wrong_secret = format!("Bearer {public}.{}", "A".repeat(43));
    let unknown = format!("Bearer sy-0123456789abcdef.{secret}");
    for (value, kind) in [
        (None, "missing"),
        (Some(""), "missing"),
        (Some("Bearer nonsense"), "malformed"),
        (Some("Basic abc"), "malformed"),
        (Some(unknown.as_str()), "unknown"),
        (Some(wrong_secret.as_str()), "unknown"),
    ] {
        let e = auth.authenticate(value).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{value:?}");
        assert!(!e.to_string().contains(secret));
    }

    // Listing never shows secrets; keys of one tenant.
    let listed = admin.keys(Some("acme")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!format!("{listed:?}").contains(secret));
    assert!(admin.keys(Some("beta")).await.unwrap().is_empty());

    // Revoked: at once where it was revoked (forget), and on a replica
    // whose cache has it after the cache time (0 here: no cache).
    let other_replica = Authenticator::new(
        db.clone(),
        Arc::new(TenancyConfig {
            key_cache_secs: 0,
            ..(*cfg).clone()
        }),
    );
    assert!(other_replica.authenticate(Some(&header)).await.is_ok());
    admin.revoke_key(&made.info.id).await.unwrap();
    assert!(auth.authenticate(Some(&header)).await.is_ok(), "cached for the TTL");
    auth.forget(&made.info.id);
    assert_eq!(auth.authenticate(Some(&header)).await.unwrap_err().kind(), "revoked");
    assert_eq!(
        other_replica.authenticate(Some(&header)).await.unwrap_err().kind(),
        "revoked"
    );
    assert!(matches!(
        admin.revoke_key(&made.info.id).await,
        Err(AdminError::NotFound { .. })
    ));

    // Expired.
    let old = admin
        .create_key(&NewKey {
            tenant: b.id.clone(),
            name: "old".into(),
            scopes: vec![Scope::Inference],
            expires_at: Some(now_unix() + 60),
            overrides: Limits::default(),
        })
        .await
        .unwrap();
    let h = format!("Bearer {}", old.secret.expose());
    let p = auth.authenticate(Some(&h)).await.unwrap();
    assert!(p.may_use("big") && !p.may_use("small"), "the tenant's allow-list wins");
    let e = auth.authenticate_at(Some(&h), now_unix() + 61).await.unwrap_err();
    assert_eq!(e.kind(), "expired");

    // Bootstrap: one admin key made once; an environment key adopted.
    let first = admin.ensure_admin_key(None).await.unwrap().expect("a new admin key");
    assert!(admin.ensure_admin_key(None).await.unwrap().is_none());
    let p = auth.authenticate(Some(first.expose())).await.unwrap();
    assert!(p.can(Scope::Admin) && p.can(Scope::Inference));
    assert_eq!(p.limits.requests_per_hour, None, "on the unlimited tier");
    let (env_key, _) = switchyard_tenancy::key::generate();
    assert!(admin.ensure_admin_key(Some(env_key.expose())).await.unwrap().is_none());
    assert!(auth
        .authenticate(Some(env_key.expose()))
        .await
        .unwrap()
        .can(Scope::Admin));
    assert!(admin.ensure_admin_key(Some("sk-not-ours")).await.is_err());
    [made.secret, old.secret, first, env_key]
        .iter()
        .map(|k| k.expose().to_string())
        .collect()
}

/// Log lines at every level, captured for one test.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn reports_and_quotas(db: &Db) {
    let cfg = config();
    let admin = Admin::new(db.clone(), cfg.clone());
    let t = admin
        .create_tenant(&NewTenant {
            name: "q".into(),
            budgets: Budgets {
                monthly_tokens: Some(1_000),
                monthly_cost_micros: Some(50),
            },
            ..NewTenant::default()
        })
        .await
        .unwrap();
    let day = 86_400;
    let now = now_unix();
    let month = switchyard_tenancy::period::month_of(now);
    let d0 = month.start; // first day of this month
    let rows = vec![
        usage("r1", &t.id, "small", d0 + 10, (100, 50), 10),
        usage("r2", &t.id, "small", d0 + day + 10, (200, 100), 20),
        usage("r3", &t.id, "big", d0 + day + 20, (1, 2), 3),
        usage("r4", "someone-else", "big", d0 + 30, (9, 9), 9),
        usage("r0", &t.id, "small", d0 - 10, (500, 500), 100), // last month
    ];
    assert_eq!(db.insert_usage(&rows).await.unwrap(), 5);
    assert_eq!(db.insert_usage(&rows[..2]).await.unwrap(), 0, "request ids count once");

    let q = |group_by| UsageQuery {
        tenant: Some(t.id.clone()),
        from: d0,
        to: d0 + 31 * day,
        group_by,
    };
    let by_model = admin.usage(&q(GroupBy::Model)).await.unwrap();
    let seen: Vec<_> = by_model
        .iter()
        .map(|g| (g.group.as_str(), g.requests, g.total_tokens, g.cost_micros))
        .collect();
    assert_eq!(seen, [("big", 1, 3, 3), ("small", 2, 450, 30)]);
    let by_day = admin.usage(&q(GroupBy::Day)).await.unwrap();
    let first_day = switchyard_tenancy::period::day_label(d0 / day);
    assert_eq!(by_day.len(), 2);
    assert_eq!(by_day[0].group, first_day);
    assert_eq!(
        (by_day[1].requests, by_day[1].prompt_tokens, by_day[1].completion_tokens),
        (2, 201, 102)
    );
    let all = admin
        .usage(&UsageQuery {
            tenant: None,
            ..q(GroupBy::Model)
        })
        .await
        .unwrap();
    assert_eq!(all.iter().map(|g| g.requests).sum::<u64>(), 4);
    let csv = usage_csv(GroupBy::Model, &by_model);
    assert_eq!(
        csv,
        "model,requests,prompt_tokens,completion_tokens,total_tokens,cost_micros\nbig,1,1,2,3,3\nsmall,2,300,150,450,30\n"
    );

    // Month to date: 453 tokens, 33 micros; the budgets are 1000 and 50.
    let quotas = Quotas::new(db.clone(), Duration::from_secs(60));
    let budgets = Budgets {
        monthly_tokens: Some(1_000),
        monthly_cost_micros: Some(50),
    };
    quotas.check(&t.id, &budgets, 0).await.unwrap();
    let e = quotas.check(&t.id, &budgets, 600).await.unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("monthly token budget exhausted for {}", month.label)),
        "{e}"
    );
    // Usage recorded here counts at once, before any flush.
    quotas.add(&t.id, 10, 17, now);
    let e = quotas.check(&t.id, &budgets, 0).await.unwrap_err();
    assert!(
        matches!(
            e,
            QuotaError::Exhausted {
                budget: Budget::Cost,
                used: 50,
                limit: 50,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("cost budget"), "{e}");
    assert!(quotas.check("nobody", &budgets, 0).await.is_ok());
    assert!(quotas.check(&t.id, &Budgets::default(), 10_000).await.is_ok());
}

#[tokio::test]
async fn tenancy_store_on_sqlite() {
    let t = TestDb::sqlite().unwrap();
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let db = Db::open(&t.url, 4).await.unwrap();
    let keys = keys_and_auth(&db).await;
    reports_and_quotas(&db).await;
    db.close().await;
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("bootstrap admin key stored"), "the capture works");
    for key in keys {
        let secret = key.split_once('.').unwrap().1;
        assert!(!logs.contains(secret), "a secret in the logs");
    }
}

#[tokio::test]
async fn tenancy_store_on_postgres() {
    let t = TestDb::postgres()
        .await
        .expect("PostgreSQL on SWITCHYARD_TEST_POSTGRES");
    let db = Db::open(&t.url, 4).await.unwrap();
    keys_and_auth(&db).await;
    reports_and_quotas(&db).await;
    db.close().await;
    t.drop_db().await.unwrap();
}
