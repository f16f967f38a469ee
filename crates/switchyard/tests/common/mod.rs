//! The real binary, started for tests.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A well-formed key (`sy-<16 hex>.<43 base64url>`), adopted as the admin key.
pub const TEST_KEY: &str = "sy-0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    c.current_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."));
    // Each process its own database: tests run side by side.
    let data = tempfile::tempdir().expect("temporary data folder").keep();
    c.env("SWITCHYARD_STORAGE__DATA_DIR", data);
    // The server's first admin key, and the one the CLI sends.
    c.env("SWITCHYARD_ADMIN_KEY", TEST_KEY)
        .env("SWITCHYARD_API_KEY", TEST_KEY);
    c
}

/// Starts `cmd` (a `serve` on port 0 with stdout piped) and returns the
/// base URL from its first line.
pub fn spawn_server(cmd: &mut Command) -> anyhow::Result<(std::process::Child, String)> {
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?).read_line(&mut line)?;
    let base = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    Ok((child, base))
}
