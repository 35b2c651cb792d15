//! Builds a Hugging Face `tokenizers::Tokenizer` from the tokenizer a GGUF
//! file carries (`tokenizer.ggml.*`), so that prompts encode to the same ids
//! as the original model's tokenizer.json.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// GGUF token type of control tokens (`<|im_start|>` and the like).
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of user-defined tokens.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// What the generator needs to know about the tokenizer besides the
/// tokenizer itself.
pub(crate) struct GgufTokenizer {
    pub tokenizer: Tokenizer,
    pub bos: Option<String>,
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

/// Builds the tokenizer from a GGUF's metadata.
pub(crate) fn from_gguf(ct: &Content, path: &Path) -> Result<GgufTokenizer> {
    let model = ct
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .ok_or_else(|| Error::tokenizer(path, "metadata tokenizer.ggml.model is missing"))?;
    if model != "gpt2" {
        return Err(Error::tokenizer(
            path,
            format!("tokenizer model {model:?} is not supported (only byte-level BPE, \"gpt2\")"),
        ));
    }
    let tokens = strings(ct, "tokenizer.ggml.tokens", path)?;
    let merges = strings(ct, "tokenizer.ggml.merges", path)?;
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|_| Error::tokenizer(path, "tokenizer.ggml.token_type is not an array"))?
            .iter()
            .map(|v| int(v).unwrap_or(1) as i32)
            .collect(),
        None => vec![1; tokens.len()],
    };
    let pre = ct
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| Error::tokenizer(path, format!("merge {m:?} has no space")))
        })
        .collect::<Result<_>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| Error::tokenizer(path, format!("cannot build BPE: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(&pre, path)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

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
    for end in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>"] {
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
        eos: eos_id.map(|i| tokens[i as usize].clone()),
        eos_ids,
    })
}
