//! `switchyard tenants|keys|usage`: tenants, API keys and usage through a
//! running server's admin API (with an `admin` key).

use clap::Subcommand;
use serde_json::{json, Value};

use crate::remote::{self, call, Remote};

#[derive(clap::Args)]
pub struct TenantArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: TenantCommand,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        name: String,
        #[arg(long)]
        tier: Option<String>,
        /// Monthly token budget.
        #[arg(long)]
        monthly_tokens: Option<u64>,
        /// Allowed models (repeat); none: the tier's.
        #[arg(long = "model")]
        models: Vec<String>,
    },
    /// Every tenant.
    List,
}

#[derive(clap::Args)]
pub struct KeyArgs {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key for a tenant; it is printed this once.
    Create {
        tenant: String,
        #[arg(long, default_value = "default")]
        name: String,
        /// `inference`, `admin` (repeat for both).
        #[arg(long = "scope", default_value = "inference")]
        scopes: Vec<String>,
        /// Unix seconds after which the key is refused.
        #[arg(long)]
        expires_at: Option<i64>,
        #[arg(long)]
        requests_per_minute: Option<u64>,
    },
    /// Keys (never the keys themselves), of one tenant or all.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Refuse a key from now on.
    Revoke { id: String },
}

#[derive(clap::Args)]
pub struct UsageArgs {
    #[command(flatten)]
    remote: Remote,
    /// Tenant id (default: every tenant).
    #[arg(long)]
    tenant: Option<String>,
    /// `model` or `day`.
    #[arg(long, default_value = "model")]
    by: String,
    /// Print CSV instead of a table.
    #[arg(long)]
    csv: bool,
}

pub fn tenants(args: TenantArgs) -> anyhow::Result<()> {
    remote::runtime()?.block_on(async move {
        let (client, base) = (args.remote.client()?, args.remote.base());
        match args.command {
            TenantCommand::Create {
                name,
                tier,
                monthly_tokens,
                models,
            } => {
                let body = json!({"name": name, "tier": tier, "models": models,
                    "budgets": {"monthly_tokens": monthly_tokens}});
                let t = call(client.post(format!("{base}/admin/tenants")).json(&body)).await?;
                println!("{} {} ({})", text(&t["id"]), text(&t["name"]), text(&t["tier"]));
            }
            TenantCommand::List => {
                let list = call(client.get(format!("{base}/admin/tenants"))).await?;
                println!("{:<34} {:<20} {:<14}", "ID", "NAME", "TIER");
                for t in rows(&list) {
                    println!(
                        "{:<34} {:<20} {:<14}",
                        text(&t["id"]),
                        text(&t["name"]),
                        text(&t["tier"])
                    );
                }
            }
        }
        Ok(())
    })
}

pub fn keys(args: KeyArgs) -> anyhow::Result<()> {
    remote::runtime()?.block_on(async move {
        let (client, base) = (args.remote.client()?, args.remote.base());
        match args.command {
            KeyCommand::Create {
                tenant,
                name,
                scopes,
                expires_at,
                requests_per_minute,
            } => {
                let body = json!({"tenant": tenant, "name": name, "scopes": scopes, "expires_at": expires_at,
                    "overrides": {"requests_per_minute": requests_per_minute}});
                let k = call(client.post(format!("{base}/admin/keys")).json(&body)).await?;
                eprintln!(
                    "key {} for tenant {} (shown only now):",
                    text(&k["id"]),
                    text(&k["tenant_id"])
                );
                println!("{}", text(&k["key"]));
            }
            KeyCommand::List { tenant } => {
                let q = tenant.map(|t| format!("?tenant={t}")).unwrap_or_default();
                let list = call(client.get(format!("{base}/admin/keys{q}"))).await?;
                println!("{:<18} {:<34} {:<16} {:<18} STATE", "ID", "TENANT", "NAME", "SCOPES");
                for k in rows(&list) {
                    let state = if !k["revoked_at"].is_null() { "revoked" } else { "live" };
                    let scopes: Vec<&str> = k["scopes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "{:<18} {:<34} {:<16} {:<18} {state}",
                        text(&k["id"]),
                        text(&k["tenant_id"]),
                        text(&k["name"]),
                        scopes.join(",")
                    );
                }
            }
            KeyCommand::Revoke { id } => {
                call(client.post(format!("{base}/admin/keys/{id}/revoke"))).await?;
                println!("{id}: revoked");
            }
        }
        Ok(())
    })
}

pub fn usage(args: UsageArgs) -> anyhow::Result<()> {
    remote::runtime()?.block_on(async move {
        let (client, base) = (args.remote.client()?, args.remote.base());
        let mut url = format!("{base}/admin/usage?group_by={}", args.by);
        if let Some(t) = &args.tenant {
            url.push_str(&format!("&tenant={t}"));
        }
        if args.csv {
            let csv = call(client.get(format!("{url}&format=csv"))).await?;
            print!("{}", csv.as_str().unwrap_or_default());
            return Ok(());
        }
        let list = call(client.get(url)).await?;
        println!(
            "{:<30} {:>9} {:>12} {:>12} {:>12}",
            args.by.to_uppercase(),
            "REQUESTS",
            "PROMPT",
            "COMPLETION",
            "COST µ"
        );
        for g in rows(&list) {
            println!(
                "{:<30} {:>9} {:>12} {:>12} {:>12}",
                text(&g["group"]),
                g["requests"],
                g["prompt_tokens"],
                g["completion_tokens"],
                g["cost_micros"]
            );
        }
        Ok(())
    })
}

fn rows(list: &Value) -> impl Iterator<Item = &Value> {
    list["data"].as_array().into_iter().flatten()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
