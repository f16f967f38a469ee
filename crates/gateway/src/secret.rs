//! Secret references (`env:NAME`, `file:PATH`) and the redacting [`Secret`].
//!
//! Configuration never holds a key itself, only where to find it; the value
//! is read once when a deployment is built and kept in a [`Secret`] whose
//! `Debug` prints `***`, so logging a config or a deployment cannot leak it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a secret lives. Written in configuration as `env:NAME` or `file:PATH`.
///
/// The reference itself is not secret, so `Debug` shows it; the value it
/// resolves to is a [`Secret`].
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file whose contents (trailing newline trimmed) are the secret.
    File(PathBuf),
}

impl SecretRef {
    /// Parses `env:NAME` or `file:PATH`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("env:") {
            if name.is_empty() {
                return Err("`env:` needs a variable name".into());
            }
            return Ok(Self::Env(name.to_owned()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path".into());
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        Err("must be `env:NAME` or `file:PATH` (literal secrets are not accepted)".into())
    }

    /// Reads the secret now.
    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match self {
            Self::Env(name) => std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"))?,
            Self::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        };
        if value.is_empty() {
            return Err(format!("{self:?} is empty"));
        }
        Ok(Secret(value))
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

/// Written back as it is configured (`env:NAME` / `file:PATH`): the
/// reference, never the value.
impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Env(name) => s.serialize_str(&format!("env:{name}")),
            Self::File(path) => s.serialize_str(&format!("file:{}", path.display())),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A resolved secret. `Debug` and `Display` print `***`; the value is only
/// reachable through [`Secret::expose`].
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_and_rejects_literals() {
        assert_eq!(
            SecretRef::parse("env:OPENAI_KEY").unwrap(),
            SecretRef::Env("OPENAI_KEY".into())
        );
        assert_eq!(
            SecretRef::parse("file:/run/key").unwrap(),
            SecretRef::File("/run/key".into())
        );
        assert!(SecretRef::parse("sk-literal").is_err());
        assert!(SecretRef::parse("env:").is_err());
    }

    #[test]
    fn file_secret_is_trimmed_and_redacted() {
        let dir = std::env::temp_dir().join(format!("sy-secret-{}", std::process::id()));
        std::fs::write(&dir, "sk-abc\n").unwrap();
        let secret = SecretRef::File(dir.clone()).resolve().unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(secret.expose(), "sk-abc");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
    }
}
