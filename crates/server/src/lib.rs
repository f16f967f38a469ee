//! The HTTP layer: OpenAI-compatible routes, health, readiness and metrics.
//! Business logic lives in the engine and in `service`; handlers are thin.

mod access;
pub mod auth;
pub mod config;
pub mod embeddings;
mod entry;
pub mod error;
pub mod extract;
mod front;
pub mod logwriter;
pub mod registry;
mod respond;
pub mod routes;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod upstream;
pub mod validate;
mod workers;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::config::Config;
pub use crate::entry::Entry;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let max_body = state.config.server.max_body_bytes;
    let mut app = Router::new();
    if state.config.admin.enabled {
        app = app
            .route(
                "/admin/models",
                get(routes::admin::models).post(routes::admin::register),
            )
            .route("/admin/models/{id}", axum::routing::delete(routes::admin::delete))
            .route("/admin/stats", get(routes::admin::stats))
            .route("/admin/upstreams", get(routes::admin::upstreams))
            .route(
                "/admin/tenants",
                get(routes::tenancy::tenants).post(routes::tenancy::create_tenant),
            )
            .route(
                "/admin/keys",
                get(routes::tenancy::keys).post(routes::tenancy::create_key),
            )
            .route("/admin/keys/{id}/revoke", post(routes::tenancy::revoke_key))
            .route("/admin/usage", get(routes::tenancy::usage))
            .route("/admin/load/{id}", post(routes::admin::load))
            .route("/admin/unload/{id}", post(routes::admin::unload));
    }
    app.route("/", get(routes::ops::root))
        .route("/health", get(routes::ops::health))
        .route("/ready", get(routes::ops::ready))
        .route("/metrics", get(routes::ops::metrics))
        .route("/v1/models", get(routes::ops::list_models))
        .route("/v1/models/{id}", get(routes::ops::get_model))
        .route("/v1/chat/completions", post(routes::openai::chat))
        .route("/v1/completions", post(routes::openai::completions))
        .route("/v1/embeddings", post(routes::embeddings::embeddings))
        .route("/v1/usage", get(routes::tenancy::usage))
        .fallback(routes::ops::not_found)
        .method_not_allowed_fallback(routes::ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), front::front))
        .with_state(state)
}

/// Binds, loads the models in the background, and serves until a shutdown
/// signal; then stops accepting and lets in-flight requests finish within
/// the configured grace period.
pub async fn serve(config: Config, on_bound: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let addr = format!("{}:{}", config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let state = AppState::open(config).await?;
    if let Some(key) = state.bootstrap_key.lock().unwrap_or_else(|p| p.into_inner()).take() {
        // Straight to the terminal, never into the logs.
        eprintln!(
            "\n  A first admin API key was created; it is shown only this once:\n\n    {}\n",
            key.expose()
        );
    }
    let models = state.models.clone();
    let db = state.db.clone();
    let tenancy = state.tenancy.clone();
    tokio::spawn(async move { models.load_all().await });
    let io_threads = match state.config.server.io_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let spin = Duration::from_micros(state.config.server.io_spin_us);
    let workers = workers::Workers::start(io_threads, spin, Entry::new(state), local)?;
    tracing::info!(address = %local, io_threads, "listening");
    on_bound(local);
    // Dropping the acceptor at the signal closes the listener.
    tokio::select! {
        _ = workers.accept(listener) => {}
        _ = shutdown_signal() => {}
    }
    tracing::info!("shutdown signal received, draining");
    if !workers.drain(grace).await {
        tracing::warn!(
            seconds = grace.as_secs(),
            "grace period over, closing remaining connections"
        );
    }
    tenancy.shutdown().await;
    db.close().await;
    workers.release();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
