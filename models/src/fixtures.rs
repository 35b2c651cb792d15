//! Tiny random-weight models written with candle, for tests that must run
//! the real loading code without the real weights (feature `fixtures`).
#![allow(missing_docs)]

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::bert::{BertModel, Config};
use std::path::Path;
use tokenizers::models::bpe::Vocab;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Deterministic pseudo-random numbers in [-scale, scale).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn tensor(&mut self, shape: (usize, usize), scale: f32) -> candle_core::Result<Tensor> {
        let v: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| self.next() * scale)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
    }
}

const WORDS: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "on", "mat",
    "hello", "world", "is", "very", "long", "sentence", "with", "many", "words", "##s", ".", ",",
];

/// Writes a tiny random-weight BERT (`config.json`, `model.safetensors`,
/// `tokenizer.json` with a small WordPiece vocabulary) into `dir`.
pub fn write_tiny_embedder(dir: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = serde_json::json!({
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 32,
        "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-12,
        "max_position_embeddings": 64, "model_type": "bert", "num_attention_heads": 4,
        "num_hidden_layers": 2, "pad_token_id": 0, "position_embedding_type": "absolute",
        "type_vocab_size": 2, "use_cache": true, "vocab_size": WORDS.len()
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let cfg: Config = serde_json::from_value(config)?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    BertModel::load(vb, &cfg)?;
    varmap.save(dir.join("model.safetensors"))?;

    let vocab: Vocab = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect();
    let wp = WordPiece::builder()
        .vocab(vocab)
        .unk_token("[UNK]".into())
        .build()?;
    let mut tok = Tokenizer::new(wp);
    tok.with_normalizer(Some(BertNormalizer::new(true, true, None, true)))?;
    tok.with_pre_tokenizer(Some(BertPreTokenizer));
    tok.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), 3),
        ("[CLS]".into(), 2),
    )));
    // As in the real model's tokenizer.json: fixed padding and truncation at
    // 128, which the embedder must replace with its own.
    tok.with_truncation(Some(TruncationParams {
        max_length: 128,
        ..Default::default()
    }))?;
    tok.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::Fixed(128),
        ..Default::default()
    }));
    tok.save(dir.join("tokenizer.json"), false)?;
    Ok(())
}

/// GPT-2's byte-to-character map.
fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut map = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs) {
        map[*b as usize] = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
    }
    map
}

const SMOLLM_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const MERGES: &[(&str, &str)] = &[
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("Ġ", "c"),
    ("a", "t"),
    ("Ġc", "at"),
    ("1", "2"),
    ("i", "s"),
];

/// What a tiny generator was written with.
pub struct TinyLlama {
    /// Its vocabulary, by id.
    pub tokens: Vec<String>,
}

/// Writes a tiny llama GGUF at `path` (weights drawn from `seed`): ASCII byte-level vocabulary, a few merges,
/// ChatML specials, Q4_1 matrices and F32 norms/embeddings.
pub fn write_tiny_generator(
    path: &Path,
    context: u32,
    seed: u64,
) -> Result<TinyLlama, Box<dyn std::error::Error + Send + Sync>> {
    let chars = byte_chars();
    let mut tokens: Vec<String> = vec![
        "<|endoftext|>".into(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    let mut types: Vec<i32> = vec![3, 3, 3];
    for b in (b' '..=b'~').chain([b'\n']) {
        tokens.push(chars[b as usize].to_string());
        types.push(1);
    }
    for (a, b) in MERGES {
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    let vocab = tokens.len();
    let (dim, ffn, heads, kv_heads, layers) = (64usize, 128usize, 2u32, 1u32, 2u32);
    let head_dim = dim / heads as usize;
    let mut rng = Lcg(seed);
    let mut qt: Vec<(String, QTensor)> = Vec::new();
    let q4 = |t: &Tensor| QTensor::quantize(t, GgmlDType::Q4_1);
    let f32t = |t: &Tensor| QTensor::quantize(t, GgmlDType::F32);
    let ones = |n: usize| Tensor::ones(n, DType::F32, &Device::Cpu);
    qt.push((
        "token_embd.weight".into(),
        f32t(&rng.tensor((vocab, dim), 1.0)?)?,
    ));
    qt.push(("output_norm.weight".into(), f32t(&ones(dim)?)?));
    // Specials get zero output rows so that greedy decoding never picks
    // them: the tests then control how generation ends.
    let mut out = rng.tensor((vocab, dim), 1.0)?.to_vec2::<f32>()?;
    for row in out.iter_mut().take(3) {
        row.iter_mut().for_each(|x| *x = 0.0);
    }
    let out = Tensor::new(out, &Device::Cpu)?;
    qt.push(("output.weight".into(), q4(&out)?));
    for l in 0..layers {
        let p = format!("blk.{l}");
        qt.push((format!("{p}.attn_norm.weight"), f32t(&ones(dim)?)?));
        qt.push((format!("{p}.ffn_norm.weight"), f32t(&ones(dim)?)?));
        let kv = head_dim * kv_heads as usize;
        qt.push((
            format!("{p}.attn_q.weight"),
            q4(&rng.tensor((dim, dim), 0.3)?)?,
        ));
        qt.push((
            format!("{p}.attn_k.weight"),
            q4(&rng.tensor((kv, dim), 0.3)?)?,
        ));
        qt.push((
            format!("{p}.attn_v.weight"),
            q4(&rng.tensor((kv, dim), 0.3)?)?,
        ));
        qt.push((
            format!("{p}.attn_output.weight"),
            q4(&rng.tensor((dim, dim), 0.3)?)?,
        ));
        qt.push((
            format!("{p}.ffn_gate.weight"),
            q4(&rng.tensor((ffn, dim), 0.3)?)?,
        ));
        qt.push((
            format!("{p}.ffn_up.weight"),
            q4(&rng.tensor((ffn, dim), 0.3)?)?,
        ));
        qt.push((
            format!("{p}.ffn_down.weight"),
            q4(&rng.tensor((dim, ffn), 0.3)?)?,
        ));
    }
    let strs = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.context_length", Value::U32(context)),
        ("llama.embedding_length", Value::U32(dim as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.block_count", Value::U32(layers)),
        ("llama.attention.head_count", Value::U32(heads)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        ("tokenizer.ggml.tokens", strs(tokens.clone())),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            strs(MERGES.iter().map(|(a, b)| format!("{a} {b}")).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        (
            "tokenizer.chat_template",
            Value::String(SMOLLM_TEMPLATE.into()),
        ),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qt.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path)?;
    gguf_file::write(&mut f, &md_refs, &t_refs)?;
    Ok(TinyLlama { tokens })
}
