//! Fresh databases for tests: a SQLite file in a temporary folder, or a
//! new PostgreSQL database on the server named by `SWITCHYARD_TEST_POSTGRES`
//! (default: the local server's `test` database), dropped afterwards.

use sqlx::Connection;

use crate::DbError;

/// Where the PostgreSQL tests connect to create their databases.
pub fn postgres_admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database that exists for one test; `url` is what the code under test
/// opens.
pub struct TestDb {
    pub url: String,
    name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Result<Self, DbError> {
        let dir = tempfile::tempdir().map_err(|error| DbError::Folder {
            path: "temporary folder".into(),
            error,
        })?;
        Ok(Self {
            url: format!("sqlite:{}", dir.path().join("switchyard.db").display()),
            name: None,
            _dir: Some(dir),
        })
    }

    /// A new, empty PostgreSQL database.
    pub async fn postgres() -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let admin = postgres_admin_url();
        let name = format!("switchyard_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::AnyConnection::connect(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Ok(Self {
            url: format!("{base}/{name}"),
            name: Some(name),
            _dir: None,
        })
    }

    /// Drops a PostgreSQL database (its connections must be closed).
    pub async fn drop_db(self) -> Result<(), DbError> {
        if let Some(name) = &self.name {
            let mut conn = sqlx::AnyConnection::connect(&postgres_admin_url()).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
        }
        Ok(())
    }
}
