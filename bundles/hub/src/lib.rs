//! The hub: builds and signs bundles, publishes them as a TUF repository,
//! exports sneakernet media and serves the repository read-only.
//!
//! The hub never connects to a spoke; everything it makes travels as files
//! or is pulled by spokes over plain HTTPS GETs.

pub mod cli;
pub mod image;
mod serve;

pub use cli::{run, Cli};

/// The hub's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bundle, repository or medium operation failed.
    #[error(transparent)]
    Bundles(#[from] bundles::Error),
    /// Building the appliance image failed.
    #[error(transparent)]
    Image(#[from] ::image::Error),
    /// Serving failed.
    #[error("serve: {0}")]
    Serve(String),
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// A stable machine-readable name for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Bundles(e) => e.kind(),
            Error::Image(e) => e.kind(),
            Error::Serve(_) => "serve",
            Error::Usage(_) => "usage",
        }
    }
}
