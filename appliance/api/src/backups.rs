//! Backups from the console: `GET /api/v1/backups` lists the backups in the
//! directory `spoke serve --backup-to DIR` writes to, and `POST
//! /api/v1/backups` takes one now, with the same recipients and retention
//! as the schedule. The work is the spoke's, through the [`Backups`] trait.

use crate::host::{blocking, configured, HostError};
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The spoke's backup directory as the API sees it.
pub trait Backups: Send + Sync {
    /// The backups in the directory, oldest first, and where it is.
    fn list(&self) -> Result<serde_json::Value, HostError>;
    /// Takes a backup now; returns what it wrote.
    fn run(&self) -> Result<serde_json::Value, HostError>;
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/backups", get(list).post(run))
}

fn backups(s: &AppState) -> Result<Arc<dyn Backups>, ApiError> {
    configured(
        &s.backups,
        "this spoke has no backup directory; start it with `spoke serve --backup-to DIR` \
         (and --backup-recipient age1… for the operator's key), or run `spoke backup`",
    )
}

async fn list(State(s): State<AppState>) -> crate::handlers::Res {
    blocking(backups(&s)?, |b| b.list()).await
}

async fn run(State(s): State<AppState>) -> crate::handlers::Res {
    blocking(backups(&s)?, |b| b.run()).await
}
