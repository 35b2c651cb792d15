//! The spoke's REST API over HTTPS: every endpoint under `/api/v1/`, plus
//! `/health`, `/health/deep` and `/metrics`. Each request is rate-limited per
//! client, authenticated by bearer token, checked against the route table's
//! permission for the caller's role, and answered with security headers;
//! errors are JSON with a stable `kind` and a message that says what to do.
//! All work is done by the appliance library; this crate only speaks HTTP.
//! The web console at `/` is served from files compiled in (`console`).
#![deny(missing_docs)]

mod ai;
mod backups;
mod console;
mod handlers;
mod host;
mod mcp;
mod media;
mod metrics;
mod os;
pub mod routes;
pub mod tls;

pub use backups::Backups;
pub use host::HostError;
pub use media::Media;
pub use os::OsSlots;

use appliance::{Actor, Appliance};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The API's error type (server start-up); request errors are [`ApiError`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or serving failed.
    #[error("serve on {addr}: {source}")]
    Io {
        /// Address.
        addr: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A configuration the spoke refuses.
    #[error("{0}")]
    Config(String),
    /// TLS material could not be made or read.
    #[error("TLS: {0}")]
    Tls(String),
}

/// How `spoke serve` listens.
#[derive(Clone)]
pub struct Config {
    /// Address to bind (port 0 picks a free one).
    pub addr: SocketAddr,
    /// TLS certificate and key (PEM); plain HTTP when None, loopback only.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Requests per second per client address (burst twice that); 0 disables.
    pub rate_limit: u32,
    /// Most AI requests running at once (further ones answer 429).
    pub ai_concurrency: usize,
    /// Media the console may inspect and install (`spoke serve --media`).
    pub media: Option<Arc<dyn Media>>,
    /// The backup directory (`spoke serve --backup-to`).
    pub backups: Option<Arc<dyn Backups>>,
    /// The OS and its boot slots (`spoke serve --esp`, on the appliance image).
    pub os: Option<Arc<dyn OsSlots>>,
}

/// A request error: HTTP status, stable kind, actionable message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header (a throttled sign-in or token).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// The HTTP status for an error kind of the appliance or the gateway.
fn status_for(kind: &str) -> StatusCode {
    match kind {
        "invalid" => StatusCode::BAD_REQUEST,
        "not_found" => StatusCode::NOT_FOUND,
        "conflict" => StatusCode::CONFLICT,
        "read_only" | "forbidden" => StatusCode::FORBIDDEN,
        "unauthenticated" => StatusCode::UNAUTHORIZED,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unsupported_media" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unreadable" | "kernel" => StatusCode::UNPROCESSABLE_ENTITY,
        // A medium the spoke refuses (bundles::Error kinds): the request
        // was fine, what it names is not acceptable.
        "bad_signature" | "unknown_key" | "threshold_not_met" | "rollback" | "mix_and_match"
        | "expired" | "digest_mismatch" | "truncated" | "decompression_bomb" | "path_traversal"
        | "absolute_path" | "link" | "device_node" | "duplicate_path" | "unknown_format"
        | "metadata" | "not_for_this_spoke" => StatusCode::UNPROCESSABLE_ENTITY,
        "quota" | "busy" | "throttled" => StatusCode::TOO_MANY_REQUESTS,
        "ai_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        // RFC 4918: the server cannot store what the request needs.
        "disk_full" => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    fn from_kind(kind: &'static str, message: String) -> Self {
        let status = status_for(kind);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(kind, "{message}");
        }
        ApiError::new(status, kind, message)
    }
}

impl From<appliance::Error> for ApiError {
    fn from(e: appliance::Error) -> Self {
        let mut api = ApiError::from_kind(e.kind(), e.to_string());
        if let appliance::Error::Throttled { retry_after } = e {
            api.retry_after = Some(retry_after);
        }
        api
    }
}

impl From<gateway::Error> for ApiError {
    fn from(e: gateway::Error) -> Self {
        ApiError::from_kind(e.kind(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(
                serde_json::json!({ "error": { "kind": self.kind, "message": self.message } }),
            ),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 section 3: a 401 names the scheme the client must use.
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"eurocomply-spoke\""),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        response
    }
}

/// Token buckets per client address.
struct Limiter {
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl Limiter {
    fn allow(&self, ip: IpAddr) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let burst = self.rate * 2.0;
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return false;
        };
        if buckets.len() > 10_000 {
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs() < 60);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Shared state of the server.
#[derive(Clone)]
pub struct AppState {
    appliance: Arc<Mutex<Appliance>>,
    gateway: Arc<gateway::Gateway>,
    metrics: Arc<metrics::Metrics>,
    limiter: Arc<Limiter>,
    media: Option<Arc<dyn Media>>,
    backups: Option<Arc<dyn Backups>>,
    os: Option<Arc<dyn OsSlots>>,
    /// Live MCP sessions per user.
    mcp_sessions: Arc<mcp::Sessions>,
}

impl AppState {
    /// Runs `f` on the appliance on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Appliance) -> Result<T, appliance::Error> + Send + 'static,
    ) -> Result<T, ApiError> {
        let app = Arc::clone(&self.appliance);
        off_thread(move || locked(&*app, |a| f(a).map_err(ApiError::from))).await
    }
}

/// Runs `f` under the lock without ever poisoning it: a panic is caught
/// while the guard is still held and answered as a 500, so the next request
/// works. The state stays consistent because every store change is an
/// SQLite transaction, rolled back when the panic drops it. A lock poisoned
/// anyway is taken back, the policy the gateway's model slots follow too.
fn locked<S, T>(
    m: &Mutex<S>,
    f: impl FnOnce(&mut S) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut guard = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut guard))).unwrap_or_else(|_| {
        tracing::error!("a request panicked inside the store; its transaction was rolled back");
        Err(ApiError::internal(
            "the request failed inside the store and nothing was written; the server goes on, report this",
        ))
    })
}

/// Runs blocking work (the store, the models, the host's files) on the
/// blocking pool, so that it never stalls the server's async threads.
pub(crate) async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

fn bearer(req: &Request) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|s| s.trim().to_string())
}

/// Rate limit, authenticate, authorise by the route table, record metrics.
async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().as_str().to_string();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let response = async {
        let mut opener: Option<String> = None;
        if !state.limiter.allow(client) {
            let mut limited = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests from this address; slow down and retry in a second",
            );
            limited.retry_after = Some(1);
            return Err(limited);
        }
        let route = routes::find(&method, &path).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no endpoint {method} {path}"),
            )
        })?;
        if let Some(permission) = route.permission {
            let secret = bearer(&req).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "no bearer token; sign in with POST /api/v1/session or use an API token",
                )
            })?;
            let origin = client.to_string();
            let actor: Actor = state
                .run(move |a| a.store_mut().authenticate(&secret, &origin))
                .await?;
            actor.require(permission)?;
            opener = Some(actor.name.clone());
            req.extensions_mut().insert(actor);
        }
        // A POST to /mcp without a session id opens a session.
        let opening = path == "/mcp"
            && method == "POST"
            && !req.headers().contains_key("mcp-session-id");
        if let Some(user) = opener.as_deref().filter(|_| opening) {
            if !state.mcp_sessions.admit(user).await {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_sessions",
                    format!(
                        "{user} already holds {} open MCP sessions; end one (DELETE /mcp with its mcp-session-id) or wait until an idle one expires",
                        mcp::MAX_SESSIONS_PER_USER
                    ),
                ));
            }
        }
        let mut res = next.run(req).await;
        if let (Some(user), true) = (opener.as_deref(), opening) {
            if let Some(id) = res
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                state.mcp_sessions.opened(user, id);
            }
        }
        // rmcp answers an ended MCP session with 202; MCP clients (the
        // reference Python SDK) expect 200, 204 or 405 for DELETE.
        if method == "DELETE" && path == "/mcp" && res.status() == StatusCode::ACCEPTED {
            *res.status_mut() = StatusCode::NO_CONTENT;
        }
        Ok(res)
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    let status = response.status().as_u16();
    state
        .metrics
        .record(&method, &path, status, start.elapsed());
    response
}

/// Counts every error response by code (for the report a spoke hands its hub).
/// Rate-limit refusals are left to `/metrics`, so a flood costs no writes.
async fn count_errors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status().as_u16();
    if status >= 400 && status != 429 {
        let counted = state
            .run(move |a| a.store().count_error(&format!("http_{status}")))
            .await;
        if let Err(e) = counted {
            tracing::warn!("counting an error response failed: {}", e.message);
        }
    }
    response
}

/// The API's headers on every response; the console's own files keep
/// their (same-origin only) Content-Security-Policy, everything else
/// gets one that allows nothing.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let console = h
        .get(header::CONTENT_SECURITY_POLICY)
        .map(HeaderValue::as_bytes)
        == Some(console::CSP.as_bytes());
    if !console {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("strict-transport-security", "max-age=31536000"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}

/// The router with every route, its guard and the security headers.
pub fn router(appliance: Appliance, config: &Config) -> axum::Router {
    let max_upload = appliance.max_upload();
    let rate_limit = config.rate_limit;
    let mcp_manager = Arc::new(
        rmcp::transport::streamable_http_server::session::local::LocalSessionManager::default(),
    );
    let state = AppState {
        appliance: Arc::new(Mutex::new(appliance)),
        gateway: Arc::new(gateway::Gateway::new(config.ai_concurrency)),
        metrics: Arc::new(metrics::Metrics::default()),
        limiter: Arc::new(Limiter {
            rate: f64::from(rate_limit),
            buckets: Mutex::new(HashMap::new()),
        }),
        media: config.media.clone(),
        backups: config.backups.clone(),
        os: config.os.clone(),
        mcp_sessions: Arc::new(mcp::Sessions::new(Arc::clone(&mcp_manager))),
    };
    handlers::routes(max_upload)
        .nest_service("/mcp", mcp::service(state.clone(), mcp_manager))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .merge(console::routes())
        .fallback(|req: Request| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no endpoint {} {}; see /api/v1/openapi.json",
                    req.method(),
                    req.uri().path()
                ),
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_errors,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Serves the API until interrupted. Calls `ready` with the URL once listening.
pub async fn serve(
    appliance: Appliance,
    config: Config,
    ready: impl FnOnce(&str),
) -> Result<(), Error> {
    if config.tls.is_none() && !config.addr.ip().is_loopback() {
        return Err(Error::Config(format!(
            "plain HTTP is allowed only on loopback, not {}; serve HTTPS (the default) or bind 127.0.0.1",
            config.addr
        )));
    }
    let addr_s = config.addr.to_string();
    let io = |source| Error::Io {
        addr: addr_s.clone(),
        source,
    };
    let listener = std::net::TcpListener::bind(config.addr).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    let local = listener.local_addr().map_err(io)?;
    let app = router(appliance, &config).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    match config.tls {
        Some((cert, key)) => {
            // Both rustls providers are linked (the sync client brings ring); use aws-lc-rs.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|e| Error::Tls(format!("{} / {}: {e}", cert.display(), key.display())))?;
            ready(&format!("https://{local}"));
            axum_server::from_tcp_rustls(listener, tls)
                .handle(handle)
                .serve(app)
                .await
                .map_err(io)
        }
        None => {
            ready(&format!("http://{local}"));
            axum_server::from_tcp(listener)
                .handle(handle)
                .serve(app)
                .await
                .map_err(io)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_request_leaves_the_next_one_working() {
        let m = Mutex::new(1);
        let e = locked(&m, |n: &mut i32| -> Result<(), ApiError> {
            *n += 1;
            panic!("overflow")
        })
        .err()
        .unwrap();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!m.is_poisoned());
        assert_eq!(locked(&m, |n| Ok(*n)).ok(), Some(2));
        // A lock poisoned elsewhere is taken back, not answered with 500s.
        let _ = std::panic::catch_unwind(|| {
            let _g = m.lock().unwrap();
            panic!("poison");
        });
        assert!(m.is_poisoned());
        assert_eq!(locked(&m, |n| Ok(*n + 1)).ok(), Some(3));
    }
}
