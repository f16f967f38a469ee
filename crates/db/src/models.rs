//! `model_versions`: model versions registered at run time, and the last
//! lifecycle state of each, so a restart restores the registry.

use sqlx::Row;

use crate::{now_unix, Db, DbError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVersionRow {
    /// `name:version`, as clients address it.
    pub id: String,
    pub name: String,
    pub version: String,
    /// The registration as JSON (the registry owns its shape).
    pub spec: String,
    pub state: String,
    pub failure: Option<String>,
}

impl Db {
    /// Records a new registration; false when `id` is already taken.
    pub async fn insert_model_version(&self, row: &ModelVersionRow) -> Result<bool, DbError> {
        let now = now_unix();
        let done = sqlx::query(
            "INSERT INTO model_versions (id, name, version, spec, state, failure, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.version)
        .bind(&row.spec)
        .bind(&row.state)
        .bind(&row.failure)
        .bind(now)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records where a version stands; a version not registered here (one
    /// from the config file) is left alone.
    pub async fn set_model_state(&self, id: &str, state: &str, failure: Option<&str>) -> Result<(), DbError> {
        sqlx::query("UPDATE model_versions SET state = $1, failure = $2, updated_at = $3 WHERE id = $4")
            .bind(state)
            .bind(failure)
            .bind(now_unix())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Removes a registration; false when there was none.
    pub async fn delete_model_version(&self, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM model_versions WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every registration, oldest first.
    pub async fn model_versions(&self) -> Result<Vec<ModelVersionRow>, DbError> {
        let rows =
            sqlx::query("SELECT id, name, version, spec, state, failure FROM model_versions ORDER BY created_at, id")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(ModelVersionRow {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    version: r.try_get("version")?,
                    spec: r.try_get("spec")?,
                    state: r.try_get("state")?,
                    failure: r.try_get("failure")?,
                })
            })
            .collect()
    }
}
