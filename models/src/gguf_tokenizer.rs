//! Builds a Hugging Face `tokenizers::Tokenizer` from the tokenizer a GGUF
//! file carries (`tokenizer.ggml.*`), so that prompts encode to the same ids
//! as the original model's tokenizer.json: GPT-2-style byte-level BPE
//! (`"gpt2"`: SmolLM2, Llama 3, Qwen2) from the stored merges, and
//! SentencePiece-style BPE (`"llama"`: Gemma, Llama 2, Mistral) with merges
//! ranked by the stored piece scores and byte fallback.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::utils::Sequence as NormalizerSequence;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};
use crate::gguf;

/// GGUF token type of ordinary vocabulary pieces.
const TOKEN_TYPE_NORMAL: i32 = 1;
/// GGUF token type of control tokens (`<|im_start|>` and the like).
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of user-defined tokens.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// What the generator needs to know about the tokenizer besides the
/// tokenizer itself.
pub(crate) struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    pub bos: Option<String>,
    pub bos_id: Option<u32>,
    pub eos: Option<String>,
    pub eos_ids: Vec<u32>,
}

fn strings(ct: &Content, key: &str, path: &Path) -> Result<Vec<String>> {
    let v = ct
        .metadata
        .get(key)
        .ok_or_else(|| Error::tokenizer(path, format!("metadata {key} is missing")))?;
    let arr = v
        .to_vec()
        .map_err(|_| Error::tokenizer(path, format!("metadata {key} is not an array")))?;
    arr.iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|_| Error::tokenizer(path, format!("metadata {key} holds a non-string")))
        })
        .collect()
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::U8(x) => Some(i64::from(*x)),
        Value::I8(x) => Some(i64::from(*x)),
        Value::U16(x) => Some(i64::from(*x)),
        Value::I16(x) => Some(i64::from(*x)),
        Value::U32(x) => Some(i64::from(*x)),
        Value::I32(x) => Some(i64::from(*x)),
        Value::U64(x) => i64::try_from(*x).ok(),
        Value::I64(x) => Some(*x),
        _ => None,
    }
}

fn token_id(ct: &Content, key: &str, n: usize) -> Option<u32> {
    ct.metadata
        .get(key)
        .and_then(int)
        .and_then(|i| u32::try_from(i).ok())
        .filter(|&i| (i as usize) < n)
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` name (llama.cpp's names).
fn pre_tokenizer(pre: &str, path: &Path) -> Result<PreTokenizerWrapper> {
    let byte_level = || ByteLevel::new(false, true, true);
    match pre {
        // SmolLM2's tokenizer.json: Sequence[Digits(individual), ByteLevel].
        "smollm" | "starcoder" => Ok(Sequence::new(vec![
            Digits::new(true).into(),
            byte_level().into(),
        ])
        .into()),
        "gpt2" | "default" | "" => Ok(byte_level().into()),
        other => Err(Error::tokenizer(
            path,
            format!("pre-tokenizer {other:?} (tokenizer.ggml.pre) is not supported; supported: smollm, starcoder, gpt2, default"),
        )),
    }
}

/// SentencePiece's word-boundary marker, standing for a space.
const SPACE: &str = "\u{2581}";

/// Token ids by piece.
fn vocab(tokens: &[String]) -> Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect()
}

/// A byte-level BPE tokenizer from the stored merges (`tokenizer.ggml.model`
/// `"gpt2"`).
fn byte_level_bpe(ct: &Content, tokens: &[String], path: &Path) -> Result<Tokenizer> {
    let merges = strings(ct, "tokenizer.ggml.merges", path)?;
    let pre = gguf::text(ct, "tokenizer.ggml.pre").unwrap_or_default();
    let merges: Merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::tokenizer(path, format!("merge {m:?} has no space")))
        })
        .collect::<Result<_>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab(tokens), merges)
        .build()
        .map_err(|e| Error::tokenizer(path, format!("cannot build BPE: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre, path)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tokenizer)
}

/// A SentencePiece-style BPE tokenizer (`tokenizer.ggml.model` `"llama"`):
/// as SentencePiece does, it merges the adjacent pair whose union is the
/// highest-scoring piece first, so every normal piece that splits into two
/// pieces gives a merge ranked by its score; characters outside the
/// vocabulary fall back to `<0xNN>` byte pieces.
fn sentencepiece_bpe(
    ct: &Content,
    tokens: &[String],
    types: &[i32],
    path: &Path,
) -> Result<Tokenizer> {
    let scores: Vec<f32> = match ct.metadata.get("tokenizer.ggml.scores") {
        Some(v) => v
            .to_vec()
            .map_err(|_| Error::tokenizer(path, "tokenizer.ggml.scores is not an array"))?
            .iter()
            .map(|v| v.to_f32().unwrap_or(0.0))
            .collect(),
        None => {
            return Err(Error::tokenizer(
                path,
                "metadata tokenizer.ggml.scores is missing",
            ))
        }
    };
    if scores.len() != tokens.len() {
        return Err(Error::tokenizer(
            path,
            format!(
                "{} scores for {} tokens (tokenizer.ggml.scores)",
                scores.len(),
                tokens.len()
            ),
        ));
    }
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut ranked: Vec<(f32, usize, &str, &str)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if types.get(id) != Some(&TOKEN_TYPE_NORMAL) {
            continue;
        }
        for (at, _) in piece.char_indices().skip(1) {
            let (a, b) = piece.split_at(at);
            if ids.contains_key(a) && ids.contains_key(b) {
                ranked.push((scores[id], id, a, b));
            }
        }
    }
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    let merges: Merges = ranked
        .into_iter()
        .map(|(_, _, a, b)| (a.to_string(), b.to_string()))
        .collect();
    let mut bpe = BPE::builder()
        .vocab_and_merges(vocab(tokens), merges)
        .byte_fallback(true);
    if let Some(unk) = token_id(ct, "tokenizer.ggml.unknown_token_id", tokens.len()) {
        bpe = bpe.unk_token(tokens[unk as usize].clone());
    }
    let bpe = bpe
        .build()
        .map_err(|e| Error::tokenizer(path, format!("cannot build BPE: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let space_prefix = gguf::flag(ct, "tokenizer.ggml.add_space_prefix").unwrap_or(true);
    let replace =
        |from: &str, to: &str| Replace::new(from, to).map_err(|e| Error::tokenizer(path, e));
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if space_prefix {
        normalizers.push(Prepend::new(SPACE.into()).into());
    }
    normalizers.push(replace(" ", SPACE)?.into());
    tokenizer
        .with_normalizer(Some(NormalizerSequence::new(normalizers)))
        .map_err(|e| Error::tokenizer(path, e))?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        replace(SPACE, " ")?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// Builds the tokenizer from a GGUF's metadata.
pub(crate) fn from_gguf(ct: &Content, path: &Path) -> Result<GgufTokenizer> {
    let model = gguf::text(ct, "tokenizer.ggml.model")
        .ok_or_else(|| Error::tokenizer(path, "metadata tokenizer.ggml.model is missing"))?;
    let tokens = strings(ct, "tokenizer.ggml.tokens", path)?;
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|_| Error::tokenizer(path, "tokenizer.ggml.token_type is not an array"))?
            .iter()
            .map(|v| int(v).unwrap_or(1) as i32)
            .collect(),
        None => vec![TOKEN_TYPE_NORMAL; tokens.len()],
    };
    let mut tokenizer = match model {
        "gpt2" => byte_level_bpe(ct, &tokens, path)?,
        "llama" => sentencepiece_bpe(ct, &tokens, &types, path)?,
        other => {
            return Err(Error::tokenizer(
                path,
                format!("tokenizer model {other:?} is not supported (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece BPE)"),
            ))
        }
    };

    let mut special = Vec::new();
    let mut user = Vec::new();
    for (t, ty) in tokens.iter().zip(types.iter()) {
        match *ty {
            TOKEN_TYPE_CONTROL => special.push(AddedToken::from(t.clone(), true)),
            TOKEN_TYPE_USER_DEFINED => user.push(AddedToken::from(t.clone(), false)),
            _ => {}
        }
    }
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| Error::tokenizer(path, e))?;
    tokenizer
        .add_tokens(user)
        .map_err(|e| Error::tokenizer(path, e))?;

    let n = tokens.len();
    let bos_id = token_id(ct, "tokenizer.ggml.bos_token_id", n);
    let eos_id = token_id(ct, "tokenizer.ggml.eos_token_id", n);
    let mut eos_ids: Vec<u32> = eos_id.into_iter().collect();
    let by_name: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types.get(*i) == Some(&TOKEN_TYPE_CONTROL))
        .map(|(i, t)| (t.as_str(), i as u32))
        .collect();
    for end in [
        "<|im_end|>",
        "<|endoftext|>",
        "<|eot_id|>",
        "<|end|>",
        "<end_of_turn>",
    ] {
        if let Some(&id) = by_name.get(end) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    }
    if eos_ids.is_empty() {
        return Err(Error::tokenizer(
            path,
            "no end-of-sequence token (tokenizer.ggml.eos_token_id) is defined",
        ));
    }
    Ok(GgufTokenizer {
        tokenizer,
        bos: bos_id.map(|i| tokens[i as usize].clone()),
        bos_id,
        eos: eos_id.map(|i| tokens[i as usize].clone()),
        eos_ids,
    })
}
