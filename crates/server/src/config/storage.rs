//! The `storage` section: where state that outlives the process is kept.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Folder for the SQLite database (and other local state).
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://user:pass@host/db`; unset: SQLite at
    /// `data_dir/switchyard.db`. Replicas that share state use PostgreSQL.
    pub url: Option<String>,
    /// Pooled connections at most.
    pub max_connections: u32,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: "data".into(),
            url: None,
            max_connections: 8,
        }
    }
}

impl StorageConfig {
    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("switchyard.db").display()))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = switchyard_db::Backend::of(&self.database_url()) {
            return Err(invalid("storage.url", e.to_string()));
        }
        if self.max_connections == 0 {
            return Err(invalid("storage.max_connections", "must be at least 1"));
        }
        Ok(())
    }
}
