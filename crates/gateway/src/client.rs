//! The HTTP client under every deployment: hyper's pooled client (kept-alive
//! connections; HTTP/2 when an https upstream offers it by ALPN, HTTP/1.1
//! otherwise), rustls with the system's root certificates, TCP_NODELAY.
//!
//! One pool per thread: the server runs each I/O thread as its own runtime,
//! and a pooled connection is driven by a task on the runtime that opened
//! it. A shared pool would hand a thread's request a connection of another
//! thread, and every request would then wake that thread twice (the send,
//! the answer); a pool per thread keeps a request and its upstream
//! connection on one thread, as nginx's workers do.
//!
//! hyper directly rather than reqwest: a proxy needs none of reqwest's
//! per-request layers (a redirect policy that parses the URL again even with
//! redirects off, a merge of default headers, boxed futures), and in the
//! gateway's profile they cost more than its own routing and accounting.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Builder, Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thread_local::ThreadLocal;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

type Pool = Client<Connector, Full<Bytes>>;

/// Connection pools (one per thread that uses it) with the headers every
/// request carries.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    pools: Arc<ThreadLocal<Pool>>,
    builder: Builder,
    connector: Connector,
    headers: HeaderMap,
}

impl HttpClient {
    /// `headers` go on every request (API key, user agent, configured ones).
    pub(crate) fn new(headers: HeaderMap, connect_timeout: Duration, idle: Duration) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_idle_timeout(idle).pool_timer(TokioTimer::new());
        Ok(Self {
            pools: Arc::new(ThreadLocal::new()),
            builder,
            connector: https,
            headers,
        })
    }

    /// This thread's pool, made on its first request.
    fn pool(&self) -> &Pool {
        self.pools.get_or(|| self.builder.build(self.connector.clone()))
    }

    /// POSTs a JSON `body` to `uri` with the client's headers and `extra`.
    pub(crate) fn post(&self, uri: Uri, extra: &HeaderMap, body: Bytes) -> ResponseFuture {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.reserve(self.headers.len() + extra.len() + 1);
        for (name, value) in self.headers.iter().chain(extra.iter()) {
            h.insert(name.clone(), value.clone());
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.pool().request(req)
    }
}

/// TLS with the system's roots. Certificates that do not parse are skipped
/// and a machine without any still builds the client: only an https
/// upstream then fails, at its handshake, naming the unknown issuer.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if added == 0 {
        tracing::debug!("no system root certificates found; https upstreams will not verify");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic

    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use http_body_util::BodyExt;

    use super::*;

    /// A server that answers each request with the client's port, i.e. the connection.
    fn upstream() -> (Uri, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let url = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = axum::Router::new()
                .fallback(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.port().to_string() });
            tokio::spawn(async move {
                axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                    .await
                    .unwrap()
            });
            format!("http://{addr}/v1/chat/completions")
        });
        (url.parse().unwrap(), rt)
    }

    async fn port(client: &HttpClient, uri: &Uri) -> String {
        let send = client.post(uri.clone(), &HeaderMap::new(), Bytes::from_static(b"{}"));
        let resp = tokio::time::timeout(Duration::from_secs(10), send)
            .await
            .unwrap()
            .unwrap();
        String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn each_thread_keeps_its_own_connections() {
        let (uri, _server) = upstream();
        let client = HttpClient::new(HeaderMap::new(), Duration::from_secs(5), Duration::from_secs(90)).unwrap();
        // Both threads run at once, each its own runtime (as the I/O
        // threads do): the second starts while the first's connection
        // is idle in the pool.
        let first_done = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let thread = |wait_first: bool| {
            let (client, uri, first_done) = (client.clone(), uri.clone(), first_done.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if wait_first {
                        first_done.wait().await;
                    }
                    let ports = [port(&client, &uri).await, port(&client, &uri).await];
                    if !wait_first {
                        first_done.wait().await;
                        // Stay alive (and keep the connection) until the other is done.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    ports
                })
            })
        };
        let (a, b) = (thread(false), thread(true));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert_eq!(a[0], a[1], "a thread reuses its connection");
        assert_eq!(b[0], b[1], "a thread reuses its connection");
        assert_ne!(a[0], b[0], "a thread never borrows another thread's connection");
    }
}
