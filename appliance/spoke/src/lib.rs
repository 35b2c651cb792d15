//! The spoke's command line: wires the agent, the appliance stores and the
//! spoke identity together. `main.rs` only parses arguments and calls [`run`].

mod ai;
pub mod backup;
pub mod boot;
pub mod cli;
mod decommission;
mod durable;
pub mod identity;
mod intake;
pub mod os;
mod packs;
pub mod policy;
mod report;
pub mod restore;
mod work;

pub use cli::{run, Cli};

/// The spoke command line's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the agent (import, verification).
    #[error(transparent)]
    Agent(#[from] agent::Error),
    /// From the bundle layer.
    #[error(transparent)]
    Bundles(#[from] bundles::Error),
    /// From the appliance stores.
    #[error(transparent)]
    Appliance(#[from] appliance::Error),
    /// Identity files.
    #[error("identity: {0}")]
    Identity(String),
    /// From the LLM gateway.
    #[error(transparent)]
    Ai(#[from] gateway::Error),
    /// From the API server.
    #[error(transparent)]
    Api(#[from] api::Error),
    /// OS slots, pre-flight or update policy.
    #[error("os: {0}")]
    Os(String),
    /// Bad command-line input.
    #[error("{0}")]
    Usage(String),
    /// A backup could not be written, or is damaged, incomplete or not for
    /// the given key; the message names the file.
    #[error("backup: {0}")]
    Backup(String),
    /// The request conflicts with what exists (a non-empty target directory).
    #[error("{0}")]
    Conflict(String),
    /// `spoke verify` found problems; the checks it printed say which.
    #[error("the data directory failed these checks: {0}; see each check's detail above")]
    Unhealthy(String),
}

impl Error {
    /// A stable machine-readable name for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Agent(e) => e.kind(),
            Error::Bundles(e) => e.kind(),
            Error::Appliance(e) => e.kind(),
            Error::Ai(e) => e.kind(),
            Error::Api(_) => "serve",
            Error::Identity(_) => "identity",
            Error::Os(_) => "os",
            Error::Usage(_) => "usage",
            Error::Backup(_) => "backup",
            Error::Conflict(_) => "conflict",
            Error::Unhealthy(_) => "unhealthy",
        }
    }
}

/// Work done for the API (media, backups) reports its kind and message.
impl From<Error> for api::HostError {
    fn from(e: Error) -> Self {
        api::HostError {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}
