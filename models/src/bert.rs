//! The BERT encoder behind [`crate::Embedder`]: embeddings, then layers of
//! self-attention and a feed-forward block, each closed by a residual
//! layer norm, as in Hugging Face's `BertModel` (absolute positions, token
//! type 0, exact-erf GELU).
//!
//! Sequences are not padded: the tokens of every sequence in a batch are
//! laid out row after row, attention stays within each sequence's rows, and
//! only the row count as a whole is rounded up to [`ROW_BLOCK`]. This gives
//! the same vectors as padding with a mask (masked keys get zero weight,
//! padded rows are never pooled) without computing the padding.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use serde::Deserialize;

use crate::dense::{Backend, Dense, ROW_BLOCK};
use crate::error::{Error, Result};
use crate::math::{add, dot, gelu, softmax, sum};
use crate::quant::Isa;

/// The parts of a Hugging Face BERT `config.json` the encoder reads.
#[derive(Deserialize)]
pub(crate) struct Config {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    layer_norm_eps: f64,
    #[serde(default = "absolute")]
    position_embedding_type: String,
}

fn two() -> usize {
    2
}

fn absolute() -> String {
    "absolute".into()
}

#[derive(Clone, Copy)]
enum Activation {
    Gelu,
    Relu,
}

struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

struct Layer {
    /// Query, key and value stacked: `3·hidden` outputs.
    qkv: Dense,
    attention_out: Dense,
    attention_norm: Norm,
    up: Dense,
    down: Dense,
    out_norm: Norm,
}

/// A loaded encoder.
pub(crate) struct Bert {
    /// The weights file, named in errors.
    path: PathBuf,
    hidden: usize,
    heads: usize,
    /// `vocab × hidden`.
    words: Vec<f32>,
    /// Position embedding plus the embedding of token type 0,
    /// `positions × hidden`.
    positions: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    activation: Activation,
    backend: Backend,
}

impl Bert {
    /// Reads the weights (safetensors bytes from `path`, dropped as soon as
    /// they are parsed; each tensor is dropped once copied) for `config`,
    /// checking every tensor's shape against it.
    pub(crate) fn load(
        path: &Path,
        bytes: Vec<u8>,
        config: &Config,
        backend: Backend,
    ) -> Result<Bert> {
        let bad = |reason: String| Error::format(path, reason);
        let activation = match config.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "relu" => Activation::Relu,
            other => {
                return Err(bad(format!(
                    "hidden_act {other:?} is not supported (gelu or relu)"
                )))
            }
        };
        if config.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "position_embedding_type {:?} is not supported (absolute)",
                config.position_embedding_type
            )));
        }
        let (d, heads) = (config.hidden_size, config.num_attention_heads);
        if heads == 0 || d % heads != 0 {
            return Err(bad(format!(
                "hidden_size {d} does not split into {heads} attention heads"
            )));
        }
        if config.type_vocab_size == 0 {
            return Err(bad(
                "type_vocab_size is 0: token type 0 needs an embedding".into()
            ));
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        drop(bytes);
        let prefix = if tensors.contains_key("embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        };
        let weights = Weights {
            tensors: RefCell::new(tensors),
            prefix,
            path,
        };
        let eps = config.layer_norm_eps as f32;
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                weight: weights.get(&format!("{name}.weight"), &[d])?,
                bias: weights.get(&format!("{name}.bias"), &[d])?,
                eps,
            })
        };
        let dense = |name: &str, n: usize, k: usize| -> Result<Dense> {
            Ok(Dense::new(
                weights.get(&format!("{name}.weight"), &[n, k])?,
                weights.get(&format!("{name}.bias"), &[n])?,
                n,
                k,
                backend,
            ))
        };
        let p = config.max_position_embeddings;
        let types = weights.get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, d],
        )?;
        let mut positions = weights.get("embeddings.position_embeddings.weight", &[p, d])?;
        for row in positions.chunks_exact_mut(d) {
            add(row, &types[..d]);
        }
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let at = format!("encoder.layer.{i}");
            let mut qkv = Vec::with_capacity(3 * d * d);
            let mut qkv_bias = Vec::with_capacity(3 * d);
            for part in ["query", "key", "value"] {
                qkv.extend(weights.get(&format!("{at}.attention.self.{part}.weight"), &[d, d])?);
                qkv_bias.extend(weights.get(&format!("{at}.attention.self.{part}.bias"), &[d])?);
            }
            let ff = config.intermediate_size;
            layers.push(Layer {
                qkv: Dense::new(qkv, qkv_bias, 3 * d, d, backend),
                attention_out: dense(&format!("{at}.attention.output.dense"), d, d)?,
                attention_norm: norm(&format!("{at}.attention.output.LayerNorm"))?,
                up: dense(&format!("{at}.intermediate.dense"), ff, d)?,
                down: dense(&format!("{at}.output.dense"), d, ff)?,
                out_norm: norm(&format!("{at}.output.LayerNorm"))?,
            });
        }
        Ok(Bert {
            path: path.to_path_buf(),
            hidden: d,
            heads,
            words: weights.get("embeddings.word_embeddings.weight", &[config.vocab_size, d])?,
            positions,
            embedding_norm: norm("embeddings.LayerNorm")?,
            layers,
            activation,
            backend,
        })
    }

    /// How the dense layers multiply.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Length of the vectors.
    pub(crate) fn dim(&self) -> usize {
        self.hidden
    }

    /// Positions, the most tokens one sequence can have.
    pub(crate) fn positions(&self) -> usize {
        self.positions.len() / self.hidden
    }

    /// Mean-pooled, L2-normalised vectors of token sequences (each already
    /// truncated to the model's positions). `Err` names a token id or a
    /// length the model cannot take.
    pub(crate) fn embed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let d = self.hidden;
        let vocab = self.words.len() / d;
        let max = self.positions();
        let path = self.path.as_path();
        let mut tokens = Vec::new();
        let mut spans = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if seq.len() > max {
                return Err(Error::input(
                    path,
                    format!("{} tokens exceed the model's {max} positions", seq.len()),
                ));
            }
            if let Some(id) = seq.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::input(
                    path,
                    format!("token id {id} is outside the model's vocabulary of {vocab}: the tokenizer does not belong to these weights"),
                ));
            }
            spans.push(tokens.len()..tokens.len() + seq.len());
            tokens.extend(seq.iter().enumerate().map(|(pos, &id)| (id as usize, pos)));
        }
        let rows = tokens.len().div_ceil(ROW_BLOCK).max(1) * ROW_BLOCK;
        let mut h = vec![0f32; rows * d];
        h.par_chunks_mut(d)
            .zip(tokens.par_iter())
            .for_each(|(row, &(id, pos))| {
                Isa::detect().run(
                    #[inline(always)]
                    || {
                        row.copy_from_slice(&self.words[id * d..(id + 1) * d]);
                        add(row, &self.positions[pos * d..(pos + 1) * d]);
                        self.embedding_norm.apply(row);
                    },
                )
            });
        for layer in &self.layers {
            h = self.layer(layer, &h, &spans);
        }
        Ok(spans.iter().map(|span| pool(&h, span.clone(), d)).collect())
    }

    fn layer(&self, layer: &Layer, h: &[f32], spans: &[std::ops::Range<usize>]) -> Vec<f32> {
        let d = self.hidden;
        let rows = h.len() / d;
        let mut qkv = vec![0f32; rows * 3 * d];
        layer.qkv.forward(h, &mut qkv, |_| {});
        let context = self.attention(&qkv, spans, rows);
        let mut attended = vec![0f32; rows * d];
        layer.attention_out.forward(&context, &mut attended, |_| {});
        add_norm(&mut attended, h, &layer.attention_norm);
        let mut up = vec![0f32; rows * layer.up.outputs()];
        let activation = self.activation;
        layer.up.forward(
            &attended,
            &mut up,
            #[inline(always)]
            |block| match activation {
                Activation::Gelu => block.iter_mut().for_each(|x| *x = gelu(*x)),
                Activation::Relu => block.iter_mut().for_each(|x| *x = x.max(0.0)),
            },
        );
        let mut out = vec![0f32; rows * d];
        layer.down.forward(&up, &mut out, |_| {});
        add_norm(&mut out, &attended, &layer.out_norm);
        out
    }

    /// Scaled dot-product attention of every head within every sequence;
    /// rows outside the spans stay zero.
    fn attention(&self, qkv: &[f32], spans: &[std::ops::Range<usize>], rows: usize) -> Vec<f32> {
        let d = self.hidden;
        let dh = d / self.heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let tasks: Vec<(usize, usize)> = (0..spans.len())
            .flat_map(|s| (0..self.heads).map(move |head| (s, head)))
            .collect();
        let heads: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(s, head)| {
                Isa::detect().run(
                    #[inline(always)]
                    || attend(qkv, d, head * dh, dh, spans[s].clone(), scale),
                )
            })
            .collect();
        let mut context = vec![0f32; rows * d];
        for (&(s, head), values) in tasks.iter().zip(heads) {
            for (t, v) in spans[s].clone().zip(values.chunks_exact(dh)) {
                context[t * d + head * dh..t * d + (head + 1) * dh].copy_from_slice(v);
            }
        }
        context
    }
}

/// Queries scored per pass over the keys.
const QUERIES: usize = 4;
/// Keys scored per vector.
const LANES: usize = 16;

/// One head's attention over the rows `span`: `softmax(q·kᵀ·scale)·v`, where
/// q, k and v are `dh` columns from `col` in the three thirds of each `qkv`
/// row (`3·d` wide). Returns `span.len() × dh`.
///
/// Keys are transposed, scaled and padded to whole vectors, so that the
/// scores of [`QUERIES`] queries against [`LANES`] keys are `dh` fused
/// multiply-adds on registers, each key vector loaded once for all of them.
#[inline(always)]
fn attend(
    qkv: &[f32],
    d: usize,
    col: usize,
    dh: usize,
    span: std::ops::Range<usize>,
    scale: f32,
) -> Vec<f32> {
    let len = span.len();
    let padded = len.div_ceil(LANES) * LANES;
    let row = |r: usize, third: usize| &qkv[r * 3 * d + third * d + col..][..dh];
    let mut keys = vec![0f32; dh * padded];
    for (j, r) in span.clone().enumerate() {
        for (i, k) in row(r, 1).iter().enumerate() {
            keys[i * padded + j] = k * scale;
        }
    }
    let mut out = vec![0f32; len * dh];
    let mut scores = vec![0f32; QUERIES * padded];
    for first in (0..len).step_by(QUERIES) {
        let n = QUERIES.min(len - first);
        // Past the last query, repeat it: the extra scores are not used.
        let q: [&[f32]; QUERIES] =
            std::array::from_fn(|r| row(span.start + first + r.min(n - 1), 0));
        for block in (0..padded).step_by(LANES) {
            let mut acc = [[0f32; LANES]; QUERIES];
            for i in 0..dh {
                let k: &[f32; LANES] = keys[i * padded + block..][..LANES]
                    .try_into()
                    .expect("a whole vector of keys");
                for (acc, q) in acc.iter_mut().zip(&q) {
                    for (a, k) in acc.iter_mut().zip(k) {
                        *a += q[i] * k;
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                scores[r * padded + block..][..LANES].copy_from_slice(acc);
            }
        }
        for r in 0..n {
            softmax(&mut scores[r * padded..r * padded + len]);
        }
        let o = &mut out[first * dh..(first + n) * dh];
        for (j, r) in span.clone().enumerate() {
            let v = row(r, 2);
            for (q, o) in o.chunks_exact_mut(dh).enumerate() {
                let p = scores[q * padded + j];
                for (o, v) in o.iter_mut().zip(v) {
                    *o += p * v;
                }
            }
        }
    }
    out
}

/// Named tensors of a checkpoint, read as F32 with their shapes checked.
struct Weights<'a> {
    tensors: RefCell<HashMap<String, Tensor>>,
    prefix: &'a str,
    path: &'a Path,
}

impl Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let t = self.tensors.borrow_mut().remove(&full).ok_or_else(|| {
            Error::format(
                self.path,
                format!("tensor {full} is missing: the weights do not match config.json"),
            )
        })?;
        if t.dims() != shape {
            return Err(Error::format(
                self.path,
                format!(
                    "tensor {full} has shape {:?} where config.json implies {shape:?}",
                    t.dims()
                ),
            ));
        }
        t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| Error::format(self.path, format!("tensor {full}: {e}")))
    }
}

impl Norm {
    #[inline(always)]
    fn apply(&self, x: &mut [f32]) {
        let n = x.len() as f32;
        let mean = sum(x) / n;
        x.iter_mut().for_each(|v| *v -= mean);
        let var = dot(x, x) / n;
        let inv = 1.0 / (var + self.eps).sqrt();
        for ((v, w), b) in x.iter_mut().zip(&self.weight).zip(&self.bias) {
            *v = *v * inv * w + b;
        }
    }
}

/// `x = norm(x + residual)`, row by row.
fn add_norm(x: &mut [f32], residual: &[f32], norm: &Norm) {
    let d = norm.weight.len();
    x.par_chunks_mut(d * ROW_BLOCK)
        .zip(residual.par_chunks(d * ROW_BLOCK))
        .for_each(|(x, r)| {
            Isa::detect().run(
                #[inline(always)]
                || {
                    for (x, r) in x.chunks_exact_mut(d).zip(r.chunks_exact(d)) {
                        add(x, r);
                        norm.apply(x);
                    }
                },
            )
        });
}

/// Mean of the rows in `span`, L2-normalised (zero for an empty span).
fn pool(h: &[f32], span: std::ops::Range<usize>, d: usize) -> Vec<f32> {
    let mut mean = vec![0f32; d];
    for row in span.clone() {
        add(&mut mean, &h[row * d..(row + 1) * d]);
    }
    let count = span.len().max(1) as f32;
    mean.iter_mut().for_each(|v| *v /= count);
    let norm = dot(&mean, &mean).sqrt().max(1e-12);
    mean.iter_mut().for_each(|v| *v /= norm);
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    /// candle-transformers' BERT on padded, masked input, mean-pooled and
    /// normalised as the embedder did before it had its own encoder.
    fn candle_vectors(dir: &Path, seqs: &[&[u32]]) -> Vec<Vec<f32>> {
        use candle_nn::VarBuilder;
        use candle_transformers::models::bert::BertModel;
        let cfg: candle_transformers::models::bert::Config =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
        let model = BertModel::load(vb, &cfg).unwrap();
        let len = seqs.iter().map(|s| s.len()).max().unwrap();
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for s in seqs {
            ids.extend(s.iter().copied().chain(std::iter::repeat(0)).take(len));
            mask.extend((0..len).map(|i| u32::from(i < s.len())));
        }
        let ids = Tensor::from_vec(ids, (seqs.len(), len), &Device::Cpu).unwrap();
        let mask = Tensor::from_vec(mask, (seqs.len(), len), &Device::Cpu).unwrap();
        let hidden = model
            .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
            .unwrap();
        let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
        let mean = hidden
            .broadcast_mul(&m)
            .unwrap()
            .sum(1)
            .unwrap()
            .broadcast_div(&m.sum(1).unwrap())
            .unwrap();
        let norm = mean.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
        mean.broadcast_div(&norm).unwrap().to_vec2().unwrap()
    }

    #[test]
    fn vectors_match_candle_transformers_bert_on_every_backend() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_embedder(dir.path()).unwrap();
        let config: Config =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        let weights = dir.path().join("model.safetensors");
        let bytes = std::fs::read(&weights).unwrap();
        // Lengths from 2 to 64 (all the tiny model's positions), so that
        // rows cross blocks and the longest sequence pads the others.
        let seqs: Vec<Vec<u32>> = [2usize, 5, 64, 17, 33, 3]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|t| ((t * 7 + i * 3) % 24) as u32).collect())
            .collect();
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let want = candle_vectors(dir.path(), &refs);
        for backend in Backend::available() {
            let bert = Bert::load(&weights, bytes.clone(), &config, backend).unwrap();
            assert_eq!(bert.backend(), backend);
            let got = bert.embed(&refs).unwrap();
            let tol = match backend {
                Backend::F32 => 1e-5,
                Backend::Amx => 2e-2,
            };
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let cos: f32 = g.iter().zip(w).map(|(a, b)| a * b).sum();
                let worst = g
                    .iter()
                    .zip(w)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(
                    worst <= tol && cos >= 0.999,
                    "{} sequence {i}: off by {worst}, cosine {cos}",
                    backend.name()
                );
            }
            // One sequence alone gives the same vector as within the batch.
            let alone = bert.embed(&refs[2..3]).unwrap();
            assert_eq!(alone[0], got[2], "{}", backend.name());
        }
    }

    #[test]
    fn bad_ids_lengths_and_configs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        crate::fixtures::write_tiny_embedder(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let config: Config = serde_json::from_str(&text).unwrap();
        let weights = dir.path().join("model.safetensors");
        let bytes = std::fs::read(&weights).unwrap();
        let bert = Bert::load(&weights, bytes.clone(), &config, Backend::F32).unwrap();
        let e = bert.embed(&[&[2, 999, 3]]).unwrap_err().to_string();
        assert!(e.contains("token id 999"), "{e}");
        let long = vec![5u32; 65];
        let e = bert.embed(&[&long]).unwrap_err().to_string();
        assert!(
            e.contains("65 tokens exceed the model's 64 positions"),
            "{e}"
        );
        assert!(bert.embed(&[]).unwrap().is_empty());

        let with = |key: &str, value: serde_json::Value| {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v[key] = value;
            serde_json::from_value::<Config>(v).unwrap()
        };
        let refuse = |config: Config, want: &str| {
            let e = Bert::load(&weights, bytes.clone(), &config, Backend::F32)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(want), "{e}");
        };
        refuse(with("hidden_act", "swish".into()), "hidden_act \"swish\"");
        refuse(
            with("num_attention_heads", 5.into()),
            "does not split into 5",
        );
        refuse(with("type_vocab_size", 0.into()), "type_vocab_size is 0");
        refuse(with("intermediate_size", 48.into()), "has shape [64, 32]");
        refuse(with("num_hidden_layers", 3.into()), "encoder.layer.2");
        let e = Bert::load(&weights, b"not safetensors".to_vec(), &config, Backend::F32)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a safetensors file"), "{e}");
    }
}
