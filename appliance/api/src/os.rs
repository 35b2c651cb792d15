//! The appliance OS from the API: `GET /api/v1/os` shows the running OS
//! version and both A/B slots (version, boot counter, which booted, which
//! boots next). Only a spoke running from the appliance image has them; the
//! spoke reads them through the [`OsSlots`] trait.

use crate::host::{blocking, configured, HostError};
use crate::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Router;

/// The OS and its boot slots as the API sees them.
pub trait OsSlots: Send + Sync {
    /// The running OS version and both slots.
    fn status(&self) -> Result<serde_json::Value, HostError>;
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/os", get(status))
}

async fn status(State(s): State<AppState>) -> crate::handlers::Res {
    let os = configured(
        &s.os,
        "this spoke does not run from the appliance image (PID 1 starts the API with --esp), \
         so it has no OS version or boot slots; `spoke os status --esp DIR` reads them on one",
    )?;
    blocking(os, |o| o.status()).await
}
