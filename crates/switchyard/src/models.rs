//! `switchyard models list|register|pull|load|unload|delete`: the admin API
//! of a running server (`admin.enabled`), from the command line.

use std::io::Write;
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

use crate::remote::{self, call, Remote};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every configured model with its status and memory.
    List,
    /// Download (from its store) and load a model, showing progress.
    Pull { id: String },
    /// Load a model (downloading it first if it has a source).
    Load { id: String },
    /// Unload a model once its in-flight requests finish.
    Unload {
        id: String,
        /// Return only once the model has stopped.
        #[arg(long)]
        wait: bool,
    },
    /// Register a model version: NAME with a folder, file or source URL.
    Register {
        name: String,
        #[arg(long)]
        version: String,
        /// A local GGUF file or model folder.
        #[arg(long, conflicts_with = "source")]
        path: Option<String>,
        /// A folder URL to copy the files from (file://, s3://, gs://, az://, https://).
        #[arg(long)]
        source: Option<String>,
        /// Load it only on its first request.
        #[arg(long)]
        lazy: bool,
    },
    /// Delete a version registered at run time (NAME:VERSION).
    Delete { id: String },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    remote::runtime()?.block_on(async move {
        let client = args.remote.client()?;
        let base = args.remote.base();
        match args.command {
            ModelsCommand::List => {
                let list = call(client.get(format!("{base}/admin/models"))).await?;
                println!(
                    "{:<28} {:<10} {:<12} {:>10} {:>6}",
                    "ID", "KIND", "STATUS", "MEMORY", "LOADS"
                );
                for m in list["data"].as_array().into_iter().flatten() {
                    println!(
                        "{:<28} {:<10} {:<12} {:>10} {:>6}",
                        m["id"].as_str().unwrap_or(""),
                        m["kind"].as_str().unwrap_or(""),
                        m["status"].as_str().unwrap_or(""),
                        mib(m["resident_bytes"].as_u64().unwrap_or(0)),
                        m["loads"].as_u64().unwrap_or(0),
                    );
                    if let Some(why) = m["failure"].as_str() {
                        println!("    failed: {why}");
                    }
                }
            }
            ModelsCommand::Load { id } => {
                let m = call(client.post(format!("{base}/admin/load/{id}"))).await?;
                println!("{id}: {}", m["status"].as_str().unwrap_or("?"));
            }
            ModelsCommand::Pull { id } => pull(&client, &base, &id).await?,
            ModelsCommand::Register {
                name,
                version,
                path,
                source,
                lazy,
            } => {
                let mut entry = serde_json::json!({"id": name, "version": version, "preload": !lazy});
                if let Some(p) = path {
                    entry["path"] = Value::String(p);
                }
                if let Some(s) = source {
                    entry["source"] = Value::String(s);
                }
                let m = call(client.post(format!("{base}/admin/models")).json(&entry)).await?;
                println!(
                    "{}: {} {} ({})",
                    m["id"].as_str().unwrap_or("?"),
                    m["kind"].as_str().unwrap_or("?"),
                    m["format"].as_str().unwrap_or("?"),
                    m["status"].as_str().unwrap_or("?")
                );
            }
            ModelsCommand::Delete { id } => {
                call(client.delete(format!("{base}/admin/models/{id}"))).await?;
                println!("{id}: deleted");
            }
            ModelsCommand::Unload { id, wait } => {
                let m = call(client.post(format!("{base}/admin/unload/{id}?wait={wait}"))).await?;
                println!("{id}: {}", m["status"].as_str().unwrap_or("?"));
            }
        }
        Ok(())
    })
}

/// Starts the load and redraws one progress line until it answers.
async fn pull(client: &reqwest::Client, base: &str, id: &str) -> anyhow::Result<()> {
    let load = tokio::spawn(call(client.post(format!("{base}/admin/load/{id}"))));
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while !load.is_finished() {
        tick.tick().await;
        let Ok(list) = call(client.get(format!("{base}/admin/models"))).await else {
            continue;
        };
        let Some(m) = list["data"].as_array().into_iter().flatten().find(|m| m["id"] == id) else {
            anyhow::bail!("no model `{id}` on {base}");
        };
        let (done, total) = (
            m["download"]["done_bytes"].as_u64().unwrap_or(0),
            m["download"]["total_bytes"].as_u64().unwrap_or(0),
        );
        let status = m["status"].as_str().unwrap_or("?");
        if status == "downloading" && total > 0 {
            let pct = done * 100 / total;
            let bar = "#".repeat((pct / 4) as usize);
            eprint!(
                "\r{id}: downloading [{bar:<25}] {pct:>3}% {} / {}",
                mib(done),
                mib(total)
            );
        } else {
            eprint!("\r{id}: {status:<60}");
        }
        std::io::stderr().flush().ok();
    }
    let m = load.await??;
    eprintln!();
    println!("{id}: {}", m["status"].as_str().unwrap_or("?"));
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}
