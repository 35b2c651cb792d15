//! What a GGUF file claims, checked before any weight is read: its
//! architecture is one this crate runs, every tensor lies inside the file
//! with the size its shape and type give, the vocabulary fits the embedding
//! matrix and the context length is usable. [`inspect`] is what the spoke
//! runs at import and activation; [`crate::Generator`] runs the same checks
//! at load.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use serde::Serialize;

use crate::error::{Error, Result};

/// A model family this crate runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama and its kin (SmolLM2, Llama 3.x, Mistral): GQA, RoPE.
    Llama,
    /// Qwen2: llama with biases on the query, key and value projections.
    Qwen2,
    /// Gemma 3: embedding scaling, GeGLU, QK-norm, pre and post norms,
    /// interleaved sliding-window and global attention.
    Gemma3,
}

impl Architecture {
    /// Every architecture, for messages.
    pub const ALL: [Architecture; 3] = [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Gemma3,
    ];

    /// The `general.architecture` name.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Gemma3 => "gemma3",
        }
    }

    fn from_name(name: &str) -> Option<Architecture> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// What a checked GGUF holds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Its model family.
    pub architecture: Architecture,
    /// How many tensors are stored in each type (`Q4K`, `F32`, ...).
    pub stored: BTreeMap<String, usize>,
    /// Tokens the model was trained to attend to (`{arch}.context_length`).
    pub context_length: usize,
    /// Tokens in the vocabulary.
    pub vocabulary: usize,
}

impl Summary {
    /// The stored types, for messages: `"9×Q6K, 27×Q4K, 109×F32"`.
    pub fn stored_types(&self) -> String {
        let parts: Vec<String> = self
            .stored
            .iter()
            .map(|(k, v)| format!("{v}×{k}"))
            .collect();
        parts.join(", ")
    }
}

/// The string metadata `key`, if the header has it as a string.
pub(crate) fn text<'a>(ct: &'a Content, key: &str) -> Option<&'a str> {
    ct.metadata
        .get(key)
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
}

/// The boolean metadata `key`, if the header has it as a boolean.
pub(crate) fn flag(ct: &Content, key: &str) -> Option<bool> {
    ct.metadata.get(key).and_then(|v| v.to_bool().ok())
}

/// The one `*.gguf` file in `dir` (a model bundle's payload).
pub fn find(dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let p = entry.path();
        if p.extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
        {
            found.push(p);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::Missing {
            path: dir.to_path_buf(),
            what: "no *.gguf file in the model directory".into(),
        }),
        n => Err(Error::Format {
            path: dir.to_path_buf(),
            reason: format!("{n} *.gguf files, expected exactly one; remove the extra ones"),
        }),
    }
}

/// Reads and checks the header of the GGUF file at `path` (no weights are
/// read). Errors have kind `"format"` (or `"missing"`/`"io"`) and say what is
/// wrong.
pub fn inspect(path: &Path) -> Result<Summary> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let ct = Content::read(&mut file)
        .map_err(|e| Error::format(path, format!("not a readable GGUF file: {e}")))?;
    check(&ct, len, path)
}

/// The checks of [`inspect`] on a header already read from a file of `len`
/// bytes.
pub(crate) fn check(ct: &Content, len: u64, path: &Path) -> Result<Summary> {
    let bad = |reason: String| Error::format(path, reason);
    let arch_name = text(ct, "general.architecture").unwrap_or_default();
    let architecture = Architecture::from_name(arch_name).ok_or_else(|| {
        let names: Vec<&str> = Architecture::ALL.iter().map(|a| a.name()).collect();
        bad(format!(
            "architecture {arch_name:?} is not supported (supported: {})",
            names.join(", ")
        ))
    })?;

    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for (name, info) in &ct.tensor_infos {
        let dtype = info.ggml_dtype;
        let elems = info.shape.elem_count() as u64;
        let block = dtype.block_size() as u64;
        if elems == 0 || !elems.is_multiple_of(block) {
            return Err(bad(format!(
                "tensor {name} has shape {:?}, not a whole number of {dtype:?} blocks of {block}",
                info.shape.dims()
            )));
        }
        let bytes = elems / block * dtype.type_size() as u64;
        let end = ct
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|s| s.checked_add(bytes));
        match end {
            Some(end) if end <= len => {}
            _ => {
                return Err(bad(format!(
                    "tensor {name} ({:?} {dtype:?}, {bytes} bytes at offset {}) runs past the end of the file ({len} bytes): the file is truncated or its header is wrong",
                    info.shape.dims(),
                    ct.tensor_data_offset.saturating_add(info.offset)
                )))
            }
        }
        *stored.entry(format!("{dtype:?}")).or_default() += 1;
    }

    let embd = ct
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| bad("it has no token_embd.weight tensor".into()))?;
    let rows = match embd.shape.dims() {
        [rows, _] => *rows,
        dims => {
            return Err(bad(format!(
                "token_embd.weight has shape {dims:?}, expected two dimensions"
            )))
        }
    };
    let vocabulary = match ct.metadata.get("tokenizer.ggml.tokens") {
        Some(Value::Array(tokens)) => tokens.len(),
        _ => return Err(bad("it has no tokenizer.ggml.tokens list".into())),
    };
    if vocabulary > rows {
        return Err(bad(format!(
            "its vocabulary has {vocabulary} tokens but token_embd.weight only {rows} rows"
        )));
    }

    let key = format!("{}.context_length", architecture.name());
    let context_length = ct
        .metadata
        .get(&key)
        .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
        .ok_or_else(|| bad(format!("metadata {key} is missing")))?;
    if context_length == 0 {
        return Err(bad(format!("metadata {key} is 0: no prompt would fit")));
    }
    Ok(Summary {
        architecture,
        stored,
        context_length: usize::try_from(context_length).unwrap_or(usize::MAX),
        vocabulary,
    })
}
