//! Bundle format, signing and verification: the one place that knows what a
//! signed bundle is.
//!
//! - [`build`] turns a source tree into a deterministic, chunked bundle file
//!   with an SBOM and provenance ([`index`] describes its index).
//! - [`repo`] is the hub's side of the TUF repository (init, publish, key
//!   rotation) and [`medium`] writes self-contained sneakernet media,
//!   optionally age-encrypted, optionally as an offline delta.
//! - [`verify`] is the spoke's one verification path for media and mirrors.
//! - [`attest`] is the format of what a spoke signs for others (its report to
//!   the hub, evidence packs) and how anyone checks it.
//!
//! This crate knows nothing of SQLite, HTTP servers or the spoke's stores.
#![deny(missing_docs)]

pub mod attest;
pub mod build;
pub mod bundle_file;
pub mod chunks;
mod error;
pub mod fsutil;
pub mod index;
pub mod keys;
pub mod manifest;
pub mod medium;
pub mod progress;
pub mod repo;
pub mod verify;

pub use error::{Error, Result};
pub use progress::Progress;

/// Runs tough's async API to completion on a private current-thread runtime.
/// Must not be called from inside an async context (use `spawn_blocking`).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => panic!("cannot start a tokio runtime: {e}"),
    }
}
