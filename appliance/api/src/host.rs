//! Work the API hands to the program that hosts it (the spoke binary) through
//! traits, because it needs crates this one must not depend on: importing
//! media (the agent, [`crate::Media`]), backups ([`crate::Backups`]) and the
//! OS boot slots ([`crate::OsSlots`]).

use crate::handlers::{ok, Res};
use crate::ApiError;
use axum::http::StatusCode;
use std::sync::Arc;

/// Why the host's work failed: a stable kind and what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    /// Stable machine-readable kind (as the spoke's errors have).
    pub kind: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        ApiError::from_kind(e.kind, e.message)
    }
}

/// The host's implementation, or a 404 that says which `spoke serve` option enables it.
pub(crate) fn configured<T: ?Sized>(
    service: &Option<Arc<T>>,
    how: &'static str,
) -> Result<Arc<T>, ApiError> {
    service
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", how))
}

/// Runs the host's work on the blocking pool (it reads and writes files).
pub(crate) async fn blocking<T: ?Sized + Send + Sync + 'static>(
    service: Arc<T>,
    f: impl FnOnce(&T) -> Result<serde_json::Value, HostError> + Send + 'static,
) -> Res {
    ok(crate::off_thread(move || f(service.as_ref()).map_err(ApiError::from)).await?)
}
