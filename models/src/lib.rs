//! Runs Tier A models on CPU: embeddings and chat generation.
//!
//! - [`Embedder`]: sentence embeddings with a BERT encoder
//!   (all-MiniLM-L6-v2, safetensors), mean-pooled and L2-normalised as
//!   sentence-transformers does; its dense layers run on AMX tiles in BF16
//!   where the CPU has them, else in F32 ([`Backend`]).
//! - [`Generator`]: chat generation with a quantised GGUF of the llama,
//!   qwen2 or gemma3 family (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M
//!   Q4_K_M), its tokenizer rebuilt from the GGUF's metadata and its Jinja
//!   chat template rendered.
//! - [`inspect`]: what a GGUF holds, checked without reading its weights
//!   (architecture, tensor bounds, vocabulary, context), for import and
//!   activation checks.
//!
//! The crate only reads model files from a directory it is given; where they
//! come from (bundles, a package) and how results are served is the caller's
//! business. Errors are one enum, [`Error`], with a stable [`Error::kind`].
#![deny(missing_docs)]

mod backbone;
mod bert;
mod dense;
mod embed;
mod error;
#[cfg(feature = "fixtures")]
pub mod fixtures;
mod generate;
mod gguf;
mod gguf_tokenizer;
mod llama;
mod math;
mod quant;

pub use dense::Backend;
pub use embed::{Embedder, BATCH_SIZE, DEFAULT_MAX_LENGTH};
pub use error::{Error, Result};
pub use generate::{ChatMessage, Finish, GenerateOptions, Generation, Generator, Role};
pub use gguf::{find as find_gguf, inspect, Architecture, Summary};
