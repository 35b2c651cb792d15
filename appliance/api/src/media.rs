//! Importing media from the console: `GET /api/v1/media` lists what is in
//! the directory where removable media are mounted (`spoke serve --media
//! DIR`), `POST …/{id}/preview` verifies one and says what it holds,
//! `POST …/{id}/install` installs it, and `GET /api/v1/media/progress`
//! reports the install's progress. The work is the agent's, reached through
//! the [`Media`] trait the spoke implements: this crate only speaks HTTP.

use crate::handlers::{ok, Res};
use crate::host::{blocking, configured, HostError};
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use std::sync::Arc;

/// Media the console can inspect and install; each medium is named by its
/// directory's name inside the media directory, never by a path.
pub trait Media: Send + Sync {
    /// The media present now, with what their `medium.json` says.
    fn list(&self) -> Result<serde_json::Value, HostError>;
    /// Verifies a medium's signed metadata and lists its bundles; changes nothing.
    fn preview(&self, name: &str) -> Result<serde_json::Value, HostError>;
    /// Verifies and installs a medium as `actor` (whom the audit log
    /// names); returns what was installed and the pack change it proposed.
    fn install(&self, actor: &appliance::Actor, name: &str)
        -> Result<serde_json::Value, HostError>;
    /// The progress of the install running now, or of the last one.
    fn progress(&self) -> serde_json::Value;
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/media", get(list))
        .route("/api/v1/media/progress", get(progress))
        .route("/api/v1/media/{id}/preview", post(preview))
        .route("/api/v1/media/{id}/install", post(install))
}

fn media(s: &AppState) -> Result<Arc<dyn Media>, ApiError> {
    configured(
        &s.media,
        "this spoke has no media directory; start it with `spoke serve --media DIR` \
         (where removable media are mounted), or import with `spoke import`",
    )
}

async fn list(State(s): State<AppState>) -> Res {
    blocking(media(&s)?, |m| m.list()).await
}

async fn progress(State(s): State<AppState>) -> Res {
    ok(media(&s)?.progress())
}

async fn preview(State(s): State<AppState>, Path(id): Path<String>) -> Res {
    blocking(media(&s)?, move |m| m.preview(&id)).await
}

async fn install(
    State(s): State<AppState>,
    Extension(actor): Extension<appliance::Actor>,
    Path(id): Path<String>,
) -> Res {
    blocking(media(&s)?, move |m| m.install(&actor, &id)).await
}
