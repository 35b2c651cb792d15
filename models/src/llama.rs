//! The llama architecture's forward pass over weights read from a GGUF file
//! with candle's reader, kept quantised ([`QMatrix`]) and multiplied with F32
//! activations; attention, RoPE and norms in plain F32 with a KV cache.
//!
//! It follows candle-transformers' `quantized_llama` (and llama.cpp) step for
//! step: RMS norm, q/k/v, interleaved RoPE, grouped-query attention with a
//! causal mask, output projection, SiLU-gated feed-forward, final norm and
//! the output projection (tied to the embeddings when the file has none).

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::Device;
use rayon::prelude::*;

use crate::math::{dot, softmax};
use crate::quant::QMatrix;

/// Longest context the cache is allowed to grow to.
pub(crate) const MAX_CONTEXT: usize = 4096;

/// Shapes and constants from the GGUF metadata.
#[derive(Clone, Debug)]
struct Config {
    dim: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
}

struct Layer {
    attn_norm: Vec<f32>,
    /// q, k and v stacked: `(heads + 2 kv_heads) · head_dim` rows.
    qkv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    /// gate and up stacked: `2 · ffn` rows.
    gate_up: QMatrix,
    down: QMatrix,
    /// Keys and values of every position so far, `kv_heads · head_dim` each.
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// A llama model ready to run.
pub(crate) struct Llama {
    cfg: Config,
    embeddings: QMatrix,
    /// None when the output projection is tied to the embeddings.
    output: Option<QMatrix>,
    norm: Vec<f32>,
    layers: Vec<Layer>,
    /// cos and sin of position × frequency, `head_dim / 2` per position.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Llama {
    /// Reads every tensor the architecture needs; `context` bounds the
    /// positions RoPE tables are built for.
    pub(crate) fn from_gguf<R: Read + Seek>(
        ct: &Content,
        reader: &mut R,
        context: usize,
    ) -> candle_core::Result<Llama> {
        let md = |k: &str| match ct.metadata.get(k) {
            Some(v) => Ok(v),
            None => candle_core::bail!("missing metadata {k}"),
        };
        let heads = md("llama.attention.head_count")?.to_u32()? as usize;
        let kv_heads = md("llama.attention.head_count_kv")?.to_u32()? as usize;
        let n_layers = md("llama.block_count")?.to_u32()? as usize;
        let dim = md("llama.embedding_length")?.to_u32()? as usize;
        let rope_dim = md("llama.rope.dimension_count")?.to_u32()? as usize;
        let eps = md("llama.attention.layer_norm_rms_epsilon")?.to_f32()?;
        let base = md("llama.rope.freq_base")
            .and_then(|v| v.to_f32())
            .unwrap_or(10000.0);
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || !dim.is_multiple_of(heads)
        {
            candle_core::bail!("{heads} heads and {kv_heads} key/value heads do not fit {dim}");
        }
        let head_dim = dim / heads;
        if rope_dim != head_dim || !head_dim.is_multiple_of(2) {
            candle_core::bail!(
                "rope over {rope_dim} of {head_dim} head dimensions is not supported \
                 (it must cover an even number of dimensions, all of them)"
            );
        }
        let embeddings = matrix(ct, reader, "token_embd.weight")?;
        let output = match ct.tensor_infos.contains_key("output.weight") {
            true => Some(matrix(ct, reader, "output.weight")?),
            false => None,
        };
        let norm = vector(ct, reader, "output_norm.weight")?;
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let p = format!("blk.{l}");
            let attn_norm = vector(ct, reader, &format!("{p}.attn_norm.weight"))?;
            let ffn_norm = vector(ct, reader, &format!("{p}.ffn_norm.weight"))?;
            let mut m = |n: &str| matrix(ct, reader, &format!("{p}.{n}.weight"));
            let qkv = QMatrix::stack(&[m("attn_q")?, m("attn_k")?, m("attn_v")?])?;
            let wo = m("attn_output")?;
            let gate = m("ffn_gate")?;
            let up = m("ffn_up")?;
            if gate.rows() != up.rows() {
                candle_core::bail!("{p}: ffn_gate and ffn_up differ in size");
            }
            let gate_up = QMatrix::stack(&[gate, up])?;
            let down = m("ffn_down")?;
            layers.push(Layer {
                attn_norm,
                qkv,
                wo,
                ffn_norm,
                gate_up,
                down,
                keys: Vec::new(),
                values: Vec::new(),
            });
        }
        let cfg = Config {
            dim,
            heads,
            kv_heads,
            head_dim,
            eps,
        };
        let model = Llama {
            cos: Vec::new(),
            sin: Vec::new(),
            cfg,
            embeddings,
            output,
            norm,
            layers,
        };
        model.check_shapes()?;
        Ok(model.with_rope(context, base))
    }

    fn check_shapes(&self) -> candle_core::Result<()> {
        let c = &self.cfg;
        let qkv = (c.heads + 2 * c.kv_heads) * c.head_dim;
        let e = &self.embeddings;
        let out = self.output.as_ref().unwrap_or(e);
        let ok = e.cols() == c.dim
            && out.cols() == c.dim
            && out.rows() == e.rows()
            && self.norm.len() == c.dim
            && self.layers.iter().all(|l| {
                l.qkv.rows() == qkv
                    && l.qkv.cols() == c.dim
                    && l.wo.rows() == c.dim
                    && l.wo.cols() == c.heads * c.head_dim
                    && l.gate_up.cols() == c.dim
                    && l.down.rows() == c.dim
                    && l.down.cols() * 2 == l.gate_up.rows()
                    && l.attn_norm.len() == c.dim
                    && l.ffn_norm.len() == c.dim
            });
        if !ok {
            candle_core::bail!("tensor shapes do not match the llama metadata");
        }
        Ok(())
    }

    fn with_rope(mut self, context: usize, base: f32) -> Llama {
        let half = self.cfg.head_dim / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / self.cfg.head_dim as f32))
            .collect();
        for pos in 0..context {
            for f in &freqs {
                let a = pos as f32 * f;
                self.cos.push(a.cos());
                self.sin.push(a.sin());
            }
        }
        self
    }

    /// Size of the vocabulary (length of the logits).
    pub(crate) fn vocab(&self) -> usize {
        self.embeddings.rows()
    }

    /// Positions the RoPE tables cover.
    pub(crate) fn context(&self) -> usize {
        self.cos.len() / (self.cfg.head_dim / 2)
    }

    /// Formats the weights are kept in, with counts (`2×F32, 7×Q4_1`).
    pub(crate) fn formats(&self) -> String {
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        let all = self
            .layers
            .iter()
            .flat_map(|l| [&l.qkv, &l.wo, &l.gate_up, &l.down])
            .chain([&self.embeddings])
            .chain(self.output.as_ref());
        for m in all {
            *counts.entry(m.format()).or_default() += 1;
        }
        let v: Vec<String> = counts.iter().map(|(k, n)| format!("{n}×{k}")).collect();
        v.join(", ")
    }

    /// Forgets every cached position.
    pub(crate) fn clear(&mut self) {
        for l in &mut self.layers {
            l.keys.clear();
            l.values.clear();
        }
    }

    /// Runs `ids` at positions `pos..`, which must follow the cached ones,
    /// and returns the logits of the last of them.
    pub(crate) fn forward(&mut self, ids: &[u32], pos: usize) -> candle_core::Result<Vec<f32>> {
        // On a worker of the pool, so that the calling thread takes part in
        // every product instead of sleeping and waking for each.
        rayon::scope(|_| self.run(ids, pos))
    }

    fn run(&mut self, ids: &[u32], pos: usize) -> candle_core::Result<Vec<f32>> {
        let c = self.cfg.clone();
        let m = ids.len();
        let cached = self.layers.first().map_or(0, |l| l.keys.len()) / (c.kv_heads * c.head_dim);
        if m == 0 || pos != cached || pos + m > self.context() {
            candle_core::bail!(
                "positions {pos}..{} do not follow the {cached} cached ones within {}",
                pos + m,
                self.context()
            );
        }
        let vocab = self.vocab();
        let mut x = Vec::with_capacity(m * c.dim);
        for &id in ids {
            let id = id as usize;
            if id >= vocab {
                candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
            }
            x.extend(self.embeddings.dequantize_rows(id..id + 1));
        }
        let (q_len, kv_len) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let mut h = vec![0f32; m * c.dim];
        let mut qkv = Vec::new();
        let mut att = vec![0f32; m * q_len];
        let mut proj = vec![0f32; m * c.dim];
        let mut gu = Vec::new();
        let mut act = Vec::new();
        for layer in &mut self.layers {
            rms_norm(&x, &layer.attn_norm, c.eps, &mut h);
            qkv.resize(m * layer.qkv.rows(), 0.0);
            layer.qkv.matmul(&h, m, &mut qkv);
            let mut q = Vec::with_capacity(m * q_len);
            for (t, row) in qkv.chunks_exact(q_len + 2 * kv_len).enumerate() {
                let (rq, rest) = row.split_at(q_len);
                let (rk, rv) = rest.split_at(kv_len);
                let at = (pos + t) * c.head_dim / 2;
                let (cos, sin) = (&self.cos[at..], &self.sin[at..]);
                let start = q.len();
                q.extend_from_slice(rq);
                rope(&mut q[start..], cos, sin, c.head_dim);
                let start = layer.keys.len();
                layer.keys.extend_from_slice(rk);
                rope(&mut layer.keys[start..], cos, sin, c.head_dim);
                layer.values.extend_from_slice(rv);
            }
            attention(&c, &q, &layer.keys, &layer.values, pos, &mut att);
            layer.wo.matmul(&att, m, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);

            rms_norm(&x, &layer.ffn_norm, c.eps, &mut h);
            gu.resize(m * layer.gate_up.rows(), 0.0);
            layer.gate_up.matmul(&h, m, &mut gu);
            let ffn = layer.down.cols();
            act.clear();
            for row in gu.chunks_exact(2 * ffn) {
                let (g, u) = row.split_at(ffn);
                act.extend(g.iter().zip(u).map(|(g, u)| g / (1.0 + (-g).exp()) * u));
            }
            layer.down.matmul(&act, m, &mut proj);
            x.iter_mut().zip(&proj).for_each(|(a, b)| *a += b);
        }
        let last = &x[(m - 1) * c.dim..];
        let mut normed = vec![0f32; c.dim];
        rms_norm(last, &self.norm, c.eps, &mut normed);
        let mut logits = vec![0f32; vocab];
        self.output
            .as_ref()
            .unwrap_or(&self.embeddings)
            .matmul(&normed, 1, &mut logits);
        Ok(logits)
    }
}

/// A weight matrix of the file.
fn matrix<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    name: &str,
) -> candle_core::Result<QMatrix> {
    QMatrix::from_qtensor(&ct.tensor(reader, name, &Device::Cpu)?)
}

/// A vector of the file (norm weights), as F32.
fn vector<R: Read + Seek>(
    ct: &Content,
    reader: &mut R,
    name: &str,
) -> candle_core::Result<Vec<f32>> {
    ct.tensor(reader, name, &Device::Cpu)?
        .dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()
}

/// `out = x / rms(x) · w`, row by row.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        let ms = dot(xr, xr) / w.len() as f32;
        let s = 1.0 / (ms + eps).sqrt();
        for ((o, v), g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * s * g;
        }
    }
}

/// Interleaved RoPE (pairs 2i, 2i+1) on every head in `v`.
fn rope(v: &mut [f32], cos: &[f32], sin: &[f32], head_dim: usize) {
    for head in v.chunks_exact_mut(head_dim) {
        for (i, pair) in head.chunks_exact_mut(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos[i] - b * sin[i];
            pair[1] = a * sin[i] + b * cos[i];
        }
    }
}

/// Causal grouped-query attention of the queries of positions `pos..` over
/// every cached key and value; `out` holds each position's heads in order.
fn attention(c: &Config, q: &[f32], keys: &[f32], values: &[f32], pos: usize, out: &mut [f32]) {
    let kv_len = c.kv_heads * c.head_dim;
    let group = c.heads / c.kv_heads;
    let scale = 1.0 / (c.head_dim as f32).sqrt();
    let one = |(i, o): (usize, &mut [f32])| {
        let (t, h) = (i / c.heads, i % c.heads);
        let qh = &q[i * c.head_dim..(i + 1) * c.head_dim];
        let kvh = (h / group) * c.head_dim;
        let seen = pos + t + 1;
        let mut scores: Vec<f32> = (0..seen)
            .map(|p| {
                let k = &keys[p * kv_len + kvh..p * kv_len + kvh + c.head_dim];
                dot(qh, k) * scale
            })
            .collect();
        softmax(&mut scores);
        o.iter_mut().for_each(|v| *v = 0.0);
        for (p, w) in scores.iter().enumerate() {
            let v = &values[p * kv_len + kvh..p * kv_len + kvh + c.head_dim];
            o.iter_mut().zip(v).for_each(|(o, v)| *o += w * v);
        }
    };
    // Scores to compute: below this, handing heads to the pool costs more
    // than it saves.
    let work = out.len() / c.head_dim * (pos + 1);
    if work < 256 {
        out.chunks_exact_mut(c.head_dim).enumerate().for_each(one);
    } else {
        out.par_chunks_exact_mut(c.head_dim)
            .enumerate()
            .for_each(one);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::Tensor;
    use candle_transformers::models::quantized_llama::ModelWeights;
    use std::io::Cursor;

    /// A tiny random-weight llama GGUF (see `fixtures`) in a fresh directory.
    fn tiny(context: u32, seed: u64) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        crate::fixtures::write_tiny_generator(&path, context, seed).unwrap();
        (dir, path)
    }

    /// The file at `path` written again with `tensor` applied to every tensor
    /// and `meta` to every metadata entry, read back.
    fn rewritten(
        path: &std::path::Path,
        tensor: impl Fn(QTensor) -> QTensor,
        meta: impl Fn(&str, &Value) -> Value,
    ) -> (Content, Cursor<Vec<u8>>) {
        let mut f = std::fs::File::open(path).unwrap();
        let ct = Content::read(&mut f).unwrap();
        let mut tensors = Vec::new();
        for name in ct.tensor_infos.keys() {
            tensors.push((
                name.clone(),
                tensor(ct.tensor(&mut f, name, &Device::Cpu).unwrap()),
            ));
        }
        let md: Vec<(&str, Value)> = ct
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), meta(k, v)))
            .collect();
        let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut cur = Cursor::new(Vec::new());
        gguf_file::write(&mut cur, &md, &refs).unwrap();
        cur.set_position(0);
        (Content::read(&mut cur).unwrap(), cur)
    }

    /// Our forward pass against candle-transformers' quantized_llama on the
    /// same weights (dequantised, so candle multiplies in F32 as we do):
    /// a prompt in two chunks, then single decode steps.
    #[test]
    fn logits_match_candles_llama() {
        let (_dir, path) = tiny(128, 11);
        let mut f = std::fs::File::open(&path).unwrap();
        let ct = Content::read(&mut f).unwrap();
        let mut ours = Llama::from_gguf(&ct, &mut f, 128).unwrap();
        // Dequantised, as candle's reference multiplies in F32.
        let (ct2, mut cur) = rewritten(
            &path,
            |t| QTensor::quantize(&t.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap(),
            |_, v| v.clone(),
        );
        let mut theirs = ModelWeights::from_gguf(ct2, &mut cur, &Device::Cpu).unwrap();
        let steps: [&[u32]; 4] = [&[1, 40, 41, 42, 7, 8], &[9, 10, 11], &[12], &[50]];
        let mut pos = 0;
        for ids in steps {
            let a = ours.forward(ids, pos).unwrap();
            let input = Tensor::new(ids, &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let b = theirs
                .forward(&input, pos)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(a.len(), b.len());
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-3 * scale,
                    "pos {pos} logit {i}: {x} vs {y}"
                );
            }
            pos += ids.len();
        }
        // Starting over gives the first step's logits again.
        ours.clear();
        let again = ours.forward(steps[0], 0).unwrap();
        theirs.clear_kv_cache();
        let input = Tensor::new(steps[0], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let b = theirs
            .forward(&input, 0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(again
            .iter()
            .zip(&b)
            .all(|(x, y)| (x - y).abs() <= 1e-3 * scale));
    }

    /// A model whose metadata gives one dimension per head (odd, so RoPE
    /// cannot pair them) is refused with a reason, not a panic.
    #[test]
    fn unusable_head_shapes_are_refused() {
        let (_dir, path) = tiny(16, 5);
        let (ct, _) = rewritten(&path, |t| t, |_, v| v.clone());
        let dim = ct.metadata["llama.embedding_length"].to_u32().unwrap();
        let (ct, mut cur) = rewritten(
            &path,
            |t| t,
            |k, v| match k {
                "llama.attention.head_count" | "llama.attention.head_count_kv" => Value::U32(dim),
                "llama.rope.dimension_count" => Value::U32(1),
                _ => v.clone(),
            },
        );
        let err = Llama::from_gguf(&ct, &mut cur, 16).err().expect("refused");
        assert!(
            err.to_string().contains("even number of dimensions"),
            "{err}"
        );
    }

    #[test]
    fn positions_and_ids_are_checked() {
        let (_dir, path) = tiny(16, 3);
        let mut f = std::fs::File::open(&path).unwrap();
        let ct = Content::read(&mut f).unwrap();
        let mut model = Llama::from_gguf(&ct, &mut f, 16).unwrap();
        assert!(
            model.forward(&[1, 2], 1).is_err(),
            "a gap before the first position"
        );
        assert!(model.forward(&[], 0).is_err(), "no tokens");
        let vocab = model.vocab() as u32;
        assert!(
            model.forward(&[vocab], 0).is_err(),
            "id outside the vocabulary"
        );
        assert!(model.forward(&[1; 17], 0).is_err(), "beyond the context");
        assert_eq!(model.forward(&[1; 16], 0).unwrap().len(), model.vocab());
        assert!(model.forward(&[1], 16).is_err(), "the context is full");
    }
}
