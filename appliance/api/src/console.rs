//! The web console: a page at `/` and its scripts and style sheet under
//! `/console/`, all compiled into the binary (nothing is fetched from
//! elsewhere, so it works air-gapped). The console is plain HTML, CSS and
//! JavaScript modules that call the same `/api/v1` endpoints as any client,
//! with the bearer token kept in the tab's `sessionStorage`; the server
//! stays the only enforcement point. Its own Content-Security-Policy allows
//! scripts, styles and requests from this origin only: no inline script or
//! style, no `eval`, no framing.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::ApiError;

/// The console's policy: same-origin scripts, styles and requests only.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

/// Every file of the console: name under `/console/`, media type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/api.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/ui.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/pages.js"),
    ),
];

const INDEX: &str = include_str!("../console/index.html");

fn asset(media_type: &'static str, body: &'static str) -> Response {
    let mut res = ([(header::CONTENT_TYPE, media_type)], body).into_response();
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    res
}

async fn file(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, media_type, body)) => asset(media_type, body),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the console has no file {name:?}; open / to start"),
        )
        .into_response(),
    }
}

/// The console's routes (public: the page itself holds no data).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route("/console/{name}", get(file))
}
