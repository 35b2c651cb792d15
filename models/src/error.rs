//! The crate's one error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong loading or running a model.
///
/// Every message says what was wrong, where (the model path) and what to do;
/// [`Error::kind`] gives a stable machine-readable name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}; check that the model was laid out completely (ci/fetch-models.sh or the model bundle) and is readable")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file the model needs is not there.
    #[error("{path}: {what}; reinstall the model bundle (or rerun ci/fetch-models.sh)")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// A model file is there but is not what this crate can run.
    #[error("{path} is not a usable model file: {reason}; reinstall the model bundle (or rerun ci/fetch-models.sh)")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The tokenizer could not be built, or failed on an input.
    #[error("tokenizer of {path}: {reason}; reinstall the model bundle if this persists")]
    Tokenizer {
        /// The model file the tokenizer comes from.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The model's chat template could not be rendered.
    #[error("chat template of {path} failed: {reason}; use a model whose GGUF carries a Jinja chat template this crate can render")]
    Template {
        /// The model file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The prompt does not fit the model's context window even after the
    /// oldest non-system messages were dropped.
    #[error("the prompt needs {needed} tokens but only {available} fit the context of {path} ({context} tokens, less max_tokens); shorten the system message or the last message, or lower max_tokens")]
    Context {
        /// The model file.
        path: PathBuf,
        /// Tokens the smallest prompt still needs.
        needed: usize,
        /// Tokens available to the prompt.
        available: usize,
        /// The model's context length.
        context: usize,
    },
    /// The computation itself failed.
    #[error("inference with {path} failed: {reason}; this is a bug or a damaged model file: reinstall the model bundle and report it if it persists")]
    Inference {
        /// The model file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The caller passed options or messages that cannot be used.
    #[error("invalid request to {path}: {reason}")]
    Input {
        /// The model file or directory.
        path: PathBuf,
        /// What was wrong and how to fix it.
        reason: String,
    },
}

impl Error {
    /// A stable name for the kind of error, for `--json` output and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Missing { .. } => "missing",
            Error::Format { .. } => "format",
            Error::Tokenizer { .. } => "tokenizer",
            Error::Template { .. } => "template",
            Error::Context { .. } => "context",
            Error::Inference { .. } => "inference",
            Error::Input { .. } => "input",
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::Missing {
                path: path.to_path_buf(),
                what: "not found".into(),
            }
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    pub(crate) fn format(path: &Path, reason: impl std::fmt::Display) -> Self {
        Error::Format {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn tokenizer(path: &Path, reason: impl std::fmt::Display) -> Self {
        Error::Tokenizer {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn inference(path: &Path, reason: impl std::fmt::Display) -> Self {
        Error::Inference {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn input(path: &Path, reason: impl std::fmt::Display) -> Self {
        Error::Input {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
