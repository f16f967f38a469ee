//! Talking to a running server's admin API: its URL, the key to send, and
//! one call that turns an error answer into its message.

use serde_json::Value;

#[derive(clap::Args)]
pub struct Remote {
    /// Base URL of the server.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080", env = "SWITCHYARD_URL")]
    pub url: String,
    /// An API key with the `admin` scope.
    #[arg(long, global = true, env = "SWITCHYARD_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

impl Remote {
    pub fn base(&self) -> String {
        self.url.trim_end_matches('/').to_string()
    }

    /// A client that sends the key on every request.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = &self.key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(reqwest::Client::builder().default_headers(headers).build()?)
    }
}

/// Sends a request; an error answer becomes its message.
pub async fn call(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let msg = body["error"]["message"].as_str().unwrap_or("no message");
        anyhow::bail!("HTTP {status}: {msg}");
    }
    Ok(body)
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}
