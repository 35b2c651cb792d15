//! Importing media from the console: `GET /api/v1/media` lists what is in
//! the directory where removable media are mounted (`spoke serve --media
//! DIR`), `POST …/{id}/preview` verifies one and says what it holds,
//! `POST …/{id}/install` installs it, and `GET /api/v1/media/progress`
//! reports the install's progress. The work is the agent's, reached through
//! the [`Media`] trait the spoke implements: this crate only speaks HTTP.

use crate::handlers::{ok, Res};
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;

/// Why a media operation failed: a stable kind and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct MediaError {
    /// Stable machine-readable kind (as the spoke's errors have).
    pub kind: &'static str,
    /// What happened and what to do.
    pub message: String,
}

/// Media the console can inspect and install; each medium is named by its
/// directory's name inside the media directory, never by a path.
pub trait Media: Send + Sync {
    /// The media present now, with what their `medium.json` says.
    fn list(&self) -> Result<serde_json::Value, MediaError>;
    /// Verifies a medium's signed metadata and lists its bundles; changes nothing.
    fn preview(&self, name: &str) -> Result<serde_json::Value, MediaError>;
    /// Verifies and installs a medium; returns what was installed and the
    /// pack change it proposed.
    fn install(&self, name: &str) -> Result<serde_json::Value, MediaError>;
    /// The progress of the install running now, or of the last one.
    fn progress(&self) -> serde_json::Value;
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        ApiError::from_kind(e.kind, e.message)
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/media", get(list))
        .route("/api/v1/media/progress", get(progress))
        .route("/api/v1/media/{id}/preview", post(preview))
        .route("/api/v1/media/{id}/install", post(install))
}

fn media(s: &AppState) -> Result<std::sync::Arc<dyn Media>, ApiError> {
    s.media.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this spoke has no media directory; start it with `spoke serve --media DIR` \
             (where removable media are mounted), or import with `spoke import`",
        )
    })
}

/// Runs a media operation on the blocking pool (verifying reads every file).
async fn blocking(
    s: &AppState,
    f: impl FnOnce(&dyn Media) -> Result<serde_json::Value, MediaError> + Send + 'static,
) -> Res {
    let m = media(s)?;
    let v = tokio::task::spawn_blocking(move || f(m.as_ref()))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    ok(v)
}

async fn list(State(s): State<AppState>) -> Res {
    blocking(&s, |m| m.list()).await
}

async fn progress(State(s): State<AppState>) -> Res {
    ok(media(&s)?.progress())
}

async fn preview(State(s): State<AppState>, Path(id): Path<String>) -> Res {
    blocking(&s, move |m| m.preview(&id)).await
}

async fn install(State(s): State<AppState>, Path(id): Path<String>) -> Res {
    blocking(&s, move |m| m.install(&id)).await
}
