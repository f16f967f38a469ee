//! The `switchyard` command line. No business logic here: it parses
//! arguments, loads the configuration and hands over to the server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod models;
mod remote;
mod tenants;
use switchyard_server::config::{Config, LogFormat, ModelConfig, ModelKind};

#[derive(Parser)]
#[command(name = "switchyard", version, about = "One binary in front of your models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured models over an OpenAI-compatible HTTP API.
    Serve(ServeArgs),
    /// Measurements for docs/benchmarks.md.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// The models of a running server (its admin API).
    Models(models::Args),
    /// Tenants of a running server.
    Tenants(tenants::TenantArgs),
    /// API keys of a running server.
    Keys(tenants::KeyArgs),
    /// Usage recorded by a running server, by model or day.
    Usage(tenants::UsageArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// YAML configuration file.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides server.host).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on, 0 for any free port (overrides server.port).
    #[arg(long)]
    port: Option<u16>,
    /// A GGUF file to serve as the default chat model, instead of the configured models.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Log format (overrides server.log_format).
    #[arg(long, value_parser = ["json", "plain"])]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and print the effective configuration.
    Check { file: PathBuf },
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(Some(&file)) {
            Ok(cfg) => {
                println!("{}", serde_json::to_string_pretty(&redacted(&cfg)).unwrap_or_default());
                eprintln!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(2)
            }
        },
        Command::Models(args) => exit(models::run(args)),
        Command::Tenants(args) => exit(tenants::tenants(args)),
        Command::Keys(args) => exit(tenants::keys(args)),
        Command::Usage(args) => exit(tenants::usage(args)),
        Command::Bench { command } => match bench::run(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = Config::load(args.config.as_deref())?;
    if let Some(host) = args.host {
        cfg.server.host = host;
    }
    if let Some(port) = args.port {
        cfg.server.port = port;
    }
    if let Some(path) = args.model {
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_lowercase();
        cfg.models = vec![ModelConfig::new(&id, ModelKind::Chat, path)];
        cfg.default_model = id;
    }
    if let Some(f) = args.log_format {
        cfg.server.log_format = if f == "plain" {
            LogFormat::Plain
        } else {
            LogFormat::Json
        };
    }
    cfg.validate()?;
    // candle's CPU thread pool reads this once, on first use: set it before any model loads.
    std::env::set_var("RAYON_NUM_THREADS", cfg.engine.threads.to_string());
    let _log_writer = switchyard_server::telemetry::init_logging(cfg.server.log_format);
    // Requests are served by the I/O threads that `serve` starts, each its
    // own runtime; this one runs the acceptor and the background work.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(switchyard_server::serve(cfg, |addr| {
        // A line for scripts and tests that start us on port 0.
        println!("switchyard listening on http://{addr}");
    }))
}

/// The effective config as JSON with the passwords in database and Redis
/// URLs masked: `config check` output ends up in CI logs and tickets.
fn redacted(cfg: &Config) -> serde_json::Value {
    // Through text, not `to_value`: an f32 such as 0.7 stays 0.7.
    let text = serde_json::to_string(cfg).unwrap_or_default();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    for path in ["/storage/url", "/tenancy/limiter/url"] {
        if let Some(url) = v.pointer_mut(path) {
            if let Some(s) = url.as_str() {
                *url = serde_json::Value::String(switchyard_db::redact(s));
            }
        }
    }
    v
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
