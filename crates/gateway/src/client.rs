//! The HTTP client under every deployment: hyper's pooled client (kept-alive
//! connections; HTTP/2 when an https upstream offers it by ALPN, HTTP/1.1
//! otherwise), rustls with the system's root certificates, TCP_NODELAY.
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
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// One connection pool with the headers every request of it carries.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
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
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(Self { client, headers })
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
        self.client.request(req)
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
