//! Read-only static serving of a repository for pull sync: GET and HEAD only,
//! ranges supported (so interrupted transfers resume), HTTPS through rustls.

use crate::Error;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tower_http::services::ServeDir;

async fn only_get_head(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        next.run(req).await
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            [("allow", "GET, HEAD")],
            "read-only repository\n",
        )
            .into_response()
    }
}

/// Serves `repo` at `addr` until interrupted; with `tls` (cert, key) over HTTPS.
pub fn serve(
    repo: &Path,
    addr: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), Error> {
    if !repo.join("metadata/timestamp.json").is_file() {
        return Err(Error::Usage(format!(
            "{} is not a repository (no metadata/timestamp.json)",
            repo.display()
        )));
    }
    let app = axum::Router::new()
        .fallback_service(ServeDir::new(repo).append_index_html_on_directories(false))
        .layer(axum::middleware::from_fn(only_get_head));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Serve(e.to_string()))?;
    rt.block_on(async move {
        let handle = axum_server::Handle::new();
        let shutdown = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
        });
        let ready = handle.clone();
        let notify = tokio::spawn(async move { ready.listening().await });
        let server = async {
            match tls {
                Some((cert, key)) => {
                    // Both rustls providers are linked (the sync client brings ring); use aws-lc-rs.
                    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                        .await
                        .map_err(|e| {
                            Error::Serve(format!(
                                "TLS certificate {} / key {}: {e}",
                                cert.display(),
                                key.display()
                            ))
                        })?;
                    axum_server::bind_rustls(addr, config)
                        .handle(handle)
                        .serve(app.into_make_service())
                        .await
                        .map_err(|e| Error::Serve(format!("{addr}: {e}")))
                }
                None => axum_server::bind(addr)
                    .handle(handle)
                    .serve(app.into_make_service())
                    .await
                    .map_err(|e| Error::Serve(format!("{addr}: {e}"))),
            }
        };
        tokio::pin!(server);
        tokio::select! {
            r = &mut server => r,
            bound = notify => {
                if let Ok(Some(bound)) = bound { on_ready(bound) }
                server.await
            }
        }
    })
}
