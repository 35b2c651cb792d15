//! The transformer behind a [`crate::Generator`]: this crate's own llama
//! pass ([`crate::llama`]) where every matrix is in a format its run-time
//! picked kernels cover (Q4_1, Q8_0, F32), else candle's quantised models of
//! the file's architecture, which keep every matrix in its stored format
//! (k-quants included) instead of widening it to F32.

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama, quantized_qwen2};

use crate::gguf::Architecture;
use crate::llama::Llama;
use crate::quant::Isa;

/// Formats the own llama pass keeps as stored.
const OWN_FORMATS: [GgmlDType; 3] = [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::F32];

pub(crate) enum Backbone {
    Own(Box<Llama>),
    Llama(Box<quantized_llama::ModelWeights>),
    Qwen2(Box<quantized_qwen2::ModelWeights>),
    Gemma3(Box<quantized_gemma3::ModelWeights>),
}

impl Backbone {
    /// Builds the model of `architecture` from a checked header; `context`
    /// bounds the positions it must serve.
    pub(crate) fn load<R: Read + Seek>(
        architecture: Architecture,
        ct: Content,
        reader: &mut R,
        context: usize,
    ) -> candle_core::Result<Backbone> {
        let device = Device::Cpu;
        let own = ct
            .tensor_infos
            .values()
            .all(|t| OWN_FORMATS.contains(&t.ggml_dtype));
        Ok(match architecture {
            Architecture::Llama if own => {
                Backbone::Own(Box::new(Llama::from_gguf(&ct, reader, context)?))
            }
            Architecture::Llama => Backbone::Llama(Box::new(
                quantized_llama::ModelWeights::from_gguf(ct, reader, &device)?,
            )),
            Architecture::Qwen2 => Backbone::Qwen2(Box::new(
                quantized_qwen2::ModelWeights::from_gguf(ct, reader, &device)?,
            )),
            Architecture::Gemma3 => Backbone::Gemma3(Box::new(
                quantized_gemma3::ModelWeights::from_gguf(ct, reader, &device)?,
            )),
        })
    }

    /// How the weights are kept and run, for diagnostics.
    pub(crate) fn describe(&self) -> String {
        match self {
            Backbone::Own(m) => format!(
                "matrices kept as {}, F32 activations ({} kernels)",
                m.formats(),
                Isa::detect().name()
            ),
            _ => "matrices kept as stored, F32 activations (candle's quantised kernels)".into(),
        }
    }

    /// Most prompt tokens one [`Backbone::forward`] call may take. candle's
    /// models build their attention masks for a prompt read in one call.
    pub(crate) fn prompt_chunk(&self) -> usize {
        match self {
            Backbone::Own(_) => 512,
            _ => usize::MAX,
        }
    }

    /// Forgets every cached position.
    pub(crate) fn clear(&mut self) {
        match self {
            Backbone::Own(m) => m.clear(),
            Backbone::Llama(m) => m.clear_kv_cache(),
            Backbone::Qwen2(m) => m.clear_kv_cache(),
            // Its cache restarts at position 0 by itself.
            Backbone::Gemma3(_) => {}
        }
    }

    /// Runs `ids` at positions `pos..` (which must follow the cached ones)
    /// and returns the logits of the last of them, one dimension.
    pub(crate) fn forward(&mut self, ids: &[u32], pos: usize) -> candle_core::Result<Tensor> {
        let device = Device::Cpu;
        let x = || Tensor::new(ids, &device)?.unsqueeze(0);
        let logits = match self {
            Backbone::Own(m) => {
                let logits = m.forward(ids, pos)?;
                let n = logits.len();
                return Tensor::from_vec(logits, n, &device);
            }
            Backbone::Llama(m) => m.forward(&x()?, pos)?,
            Backbone::Qwen2(m) => m.forward(&x()?, pos)?,
            Backbone::Gemma3(m) => m.forward(&x()?, pos)?,
        };
        logits.squeeze(0)
    }
}
