//! `model_versions` on a real SQLite file and a real PostgreSQL database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use switchyard_db::testing::TestDb;
use switchyard_db::{Backend, Db, ModelVersionRow};

fn row(id: &str) -> ModelVersionRow {
    let (name, version) = id.split_once(':').unwrap();
    ModelVersionRow {
        id: id.into(),
        name: name.into(),
        version: version.into(),
        spec: format!("{{\"id\":\"{name}\"}}"),
        state: "registered".into(),
        failure: None,
    }
}

async fn exercise(url: &str, backend: Backend) {
    let db = Db::open(url, 4).await.unwrap();
    assert_eq!(db.backend(), backend);
    assert!(db.insert_model_version(&row("m:1")).await.unwrap());
    assert!(db.insert_model_version(&row("m:2")).await.unwrap());
    assert!(
        !db.insert_model_version(&row("m:1")).await.unwrap(),
        "a second registration of m:1"
    );
    db.set_model_state("m:2", "failed", Some("checksum mismatch"))
        .await
        .unwrap();
    db.set_model_state("not-registered", "ready", None).await.unwrap();
    db.close().await;

    // Reopened: migrations are not run twice, and the rows are there.
    let db = Db::open(url, 4).await.unwrap();
    let rows = db.model_versions().await.unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["m:1", "m:2"]);
    assert_eq!(rows[1].state, "failed");
    assert_eq!(rows[1].failure.as_deref(), Some("checksum mismatch"));
    assert_eq!(rows[0].spec, "{\"id\":\"m\"}");
    assert!(db.delete_model_version("m:1").await.unwrap());
    assert!(!db.delete_model_version("m:1").await.unwrap());
    assert_eq!(db.model_versions().await.unwrap().len(), 1);
    db.close().await;
}

#[tokio::test]
async fn model_versions_on_sqlite() {
    let t = TestDb::sqlite().unwrap();
    exercise(&t.url, Backend::Sqlite).await;
}

#[tokio::test]
async fn model_versions_on_postgres() {
    let t = TestDb::postgres()
        .await
        .expect("PostgreSQL on SWITCHYARD_TEST_POSTGRES");
    exercise(&t.url, Backend::Postgres).await;
    t.drop_db().await.unwrap();
}
