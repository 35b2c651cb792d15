//! Chat generation with a quantised GGUF model (llama, qwen2 or gemma3):
//! chat template, context budgeting, sampling, stop sequences and streaming.
//! The forward pass is [`crate::backbone`].

use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use candle_core::Tensor;
use candle_transformers::generation::LogitsProcessor;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::backbone::Backbone;
use crate::error::{Error, Result};
use crate::gguf::{self, Architecture};
use crate::gguf_tokenizer;
use crate::llama::MAX_CONTEXT;

/// Who said a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role's name in chat templates: `system`, `user` or `assistant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// How to generate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GenerateOptions {
    /// Most tokens to generate; the prompt must leave this much room in the
    /// context.
    pub max_tokens: usize,
    /// Sampling temperature; 0 means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling threshold, used when `temperature > 0`.
    pub top_p: Option<f64>,
    /// Seed of the sampler: the same seed, options and prompt give the same text.
    pub seed: u64,
    /// Texts that end generation when produced; they are not part of the output.
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            temperature: 0.0,
            top_p: None,
            seed: 42,
            stop: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// The model ended its turn, or a stop sequence was produced.
    Stop,
    /// `max_tokens` (or the end of the context) was reached.
    Length,
    /// The callback returned `ControlFlow::Break`.
    Cancelled,
}

/// The result of [`Generator::chat`].
#[derive(Clone, Debug, Serialize)]
pub struct Generation {
    /// The generated text (exactly what was streamed to the callback).
    pub text: String,
    /// Tokens of the prompt actually used (after dropping old messages).
    pub prompt_tokens: usize,
    /// Tokens sampled, not counting the end-of-turn token.
    pub completion_tokens: usize,
    /// Why generation ended.
    pub finish: Finish,
}

/// ChatML, used when a GGUF of another family than Gemma has no chat
/// template.
const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Gemma's turn format, used when a Gemma GGUF has no chat template (base
/// models): as Gemma's own template, a system message opens the first user
/// turn.
const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}{% set turns = messages[1:] %}{% else %}{% set first = '' %}{% set turns = messages %}{% endif %}{% for message in turns %}{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' }}{% if loop.first %}{{ first }}{% endif %}{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

/// A loaded chat model.
pub struct Generator {
    model: Backbone,
    tokenizer: Tokenizer,
    template: String,
    bos: Option<String>,
    /// The BOS id, when the GGUF asks for it before every prompt
    /// (`tokenizer.ggml.add_bos_token`) and the template does not write it.
    add_bos: Option<u32>,
    eos: Option<String>,
    eos_ids: Vec<u32>,
    context_length: usize,
    quantization: String,
    path: PathBuf,
}

impl Generator {
    /// dir holds exactly one *.gguf file (the model bundle payload).
    pub fn load(dir: &Path) -> Result<Generator> {
        Self::load_file(&gguf::find(dir)?)
    }

    /// Loads a GGUF file directly, after the checks of [`crate::inspect`].
    /// Q4_1, Q8_0 and F32 llama files run on this crate's own kernels; every
    /// other file runs on candle's quantised models of its architecture,
    /// its matrices kept in their stored formats.
    pub fn load_file(gguf: &Path) -> Result<Generator> {
        let mut file = File::open(gguf).map_err(|e| Error::io(gguf, e))?;
        let len = file.metadata().map_err(|e| Error::io(gguf, e))?.len();
        let ct = Content::read(&mut file)
            .map_err(|e| Error::format(gguf, format!("not a readable GGUF file: {e}")))?;
        let summary = gguf::check(&ct, len, gguf)?;
        let tok = gguf_tokenizer::from_gguf(&ct, gguf)?;
        let template = gguf::text(&ct, "tokenizer.chat_template")
            .unwrap_or(match summary.architecture {
                Architecture::Gemma3 => GEMMA_TEMPLATE,
                _ => CHATML_TEMPLATE,
            })
            .to_string();
        let add_bos = gguf::flag(&ct, "tokenizer.ggml.add_bos_token")
            .unwrap_or(false)
            .then_some(tok.bos_id)
            .flatten();
        let context_length = summary.context_length.min(MAX_CONTEXT);
        let model = Backbone::load(summary.architecture, ct, &mut file, context_length)
            .map_err(|e| Error::format(gguf, format!("cannot build the model: {e}")))?;
        let quantization = format!(
            "{} stored {}; {}",
            summary.architecture.name(),
            summary.stored_types(),
            model.describe()
        );
        Ok(Generator {
            model,
            tokenizer: tok.tokenizer,
            template,
            bos: tok.bos,
            add_bos,
            eos: tok.eos,
            eos_ids: tok.eos_ids,
            context_length,
            quantization,
            path: gguf.to_path_buf(),
        })
    }

    /// Tokens the model can attend to (prompt plus generated text).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// What was done to the weights' quantisation at load, for benchmarks
    /// and diagnostics.
    pub fn quantization(&self) -> &str {
        &self.quantization
    }

    /// Number of tokens `text` encodes to (for context budgeting by callers).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.encode(text)?.len())
    }

    /// Token ids of `text`, with special tokens such as `<|im_start|>`
    /// recognised; no BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::tokenizer(&self.path, e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::tokenizer(&self.path, e))
    }

    /// The prompt the model's chat template makes of `messages`, ending with
    /// the assistant's turn opening.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        let mut env = minijinja::Environment::new();
        // As Hugging Face renders chat templates: trim_blocks, lstrip_blocks.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Template {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        env.set_syntax(syntax);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        let ctx = minijinja::context! {
            messages => minijinja::Value::from(
                messages
                    .iter()
                    .map(|m| {
                        minijinja::Value::from_pairs([
                            ("role", m.role.as_str().to_string()),
                            ("content", m.content.clone()),
                        ])
                    })
                    .collect::<Vec<_>>()
            ),
            add_generation_prompt => true,
            bos_token => self.bos.clone().unwrap_or_default(),
            eos_token => self.eos.clone().unwrap_or_default(),
        };
        env.render_str(&self.template, ctx)
            .map_err(|e| Error::Template {
                path: self.path.clone(),
                reason: e.to_string(),
            })
    }

    /// The prompt's token ids after dropping the oldest non-system messages
    /// until it leaves `max_tokens` free in the context.
    fn fit_prompt(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<Vec<u32>> {
        let available = self.context_length.saturating_sub(max_tokens);
        let mut msgs = messages.to_vec();
        loop {
            let mut ids = self.encode(&self.render_chat(&msgs)?)?;
            if let Some(bos) = self.add_bos {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
            if ids.len() <= available && !ids.is_empty() {
                return Ok(ids);
            }
            let oldest = msgs.iter().position(|m| m.role != Role::System);
            match oldest {
                Some(i) if i + 1 < msgs.len() => {
                    msgs.remove(i);
                }
                _ => {
                    return Err(Error::Context {
                        path: self.path.clone(),
                        needed: ids.len(),
                        available,
                        context: self.context_length,
                    })
                }
            }
        }
    }

    fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Tensor> {
        self.model
            .forward(ids, pos)
            .map_err(|e| Error::inference(&self.path, e))
    }

    /// Renders the model's chat template (from the GGUF's
    /// `tokenizer.chat_template`; SmolLM2 uses ChatML), generates, streams
    /// text pieces to `on_text` (valid UTF-8 pieces only; return
    /// `ControlFlow::Break` to cancel), stops at EOS, at any of `opts.stop`
    /// (stop text not included in output), or at `max_tokens`. If the prompt
    /// plus `max_tokens` does not fit the context, the oldest non-system
    /// messages are dropped; if it still does not fit, the error has kind
    /// `"context"`.
    pub fn chat(
        &mut self,
        messages: &[ChatMessage],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<Generation> {
        if messages.is_empty() {
            return Err(Error::input(&self.path, "no messages: send at least one"));
        }
        if !opts.temperature.is_finite() || opts.temperature < 0.0 {
            return Err(Error::input(
                &self.path,
                format!(
                    "temperature {} must be a number ≥ 0 (0 = greedy)",
                    opts.temperature
                ),
            ));
        }
        if let Some(p) = opts.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::input(
                    &self.path,
                    format!("top_p {p} must be in (0, 1]"),
                ));
            }
        }
        let prompt = self.fit_prompt(messages, opts.max_tokens)?;
        let prompt_tokens = prompt.len();
        let temperature = (opts.temperature > 0.0).then_some(opts.temperature);
        let mut sampler = LogitsProcessor::new(opts.seed, temperature, opts.top_p);
        let stops: Vec<&str> = opts
            .stop
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();

        let mut stream = Stream::default();
        if opts.max_tokens == 0 {
            return Ok(stream.finish(prompt_tokens, 0, Finish::Length));
        }
        self.model.clear();
        let mut logits = None;
        let mut pos = 0;
        for chunk in prompt.chunks(self.model.prompt_chunk()) {
            logits = Some(self.forward(chunk, pos)?);
            pos += chunk.len();
        }
        let mut logits = logits.ok_or_else(|| Error::input(&self.path, "empty prompt"))?;
        let mut completion = 0usize;
        let finish = loop {
            let next = sampler
                .sample(&logits)
                .map_err(|e| Error::inference(&self.path, e))?;
            if self.eos_ids.contains(&next) {
                break Finish::Stop;
            }
            completion += 1;
            stream.ids.push(next);
            let text = self.decode(&stream.ids)?;
            match stream.advance(text, &stops, on_text) {
                Step::Continue => {}
                Step::Stopped => break Finish::Stop,
                Step::Cancelled => break Finish::Cancelled,
            }
            if completion >= opts.max_tokens || pos + 1 >= self.context_length {
                break Finish::Length;
            }
            logits = self.forward(&[next], pos)?;
            pos += 1;
        };
        if matches!(finish, Finish::Length | Finish::Stop) && !stream.stopped {
            // Flush what was held back (an incomplete character or a
            // possible start of a stop sequence).
            let text = self.decode(&stream.ids)?;
            if stream.flush(text, on_text).is_break() {
                return Ok(stream.finish(prompt_tokens, completion, Finish::Cancelled));
            }
        }
        Ok(stream.finish(prompt_tokens, completion, finish))
    }
}

/// Streaming state: generated ids, the text streamed so far.
#[derive(Default)]
struct Stream {
    ids: Vec<u32>,
    emitted: String,
    stopped: bool,
}

enum Step {
    Continue,
    Stopped,
    Cancelled,
}

impl Stream {
    /// Takes the decoded text of all generated ids; streams what is safe.
    fn advance(
        &mut self,
        text: String,
        stops: &[&str],
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Step {
        // Text already streamed never changes; if decoding disagrees (it
        // cannot for byte-level BPE), only stream what extends it.
        if !text.starts_with(self.emitted.as_str()) {
            return Step::Continue;
        }
        let start = self.emitted.len();
        // A stop sequence anywhere in the text not yet streamed (it may begin
        // in the held-back tail).
        let found = stops
            .iter()
            .filter_map(|s| text[start..].find(s).map(|p| start + p))
            .min();
        if let Some(p) = found {
            self.stopped = true;
            let piece = &text[start..p];
            if !piece.is_empty() {
                self.emitted.push_str(piece);
                if on_text(piece).is_break() {
                    return Step::Cancelled;
                }
            }
            return Step::Stopped;
        }
        // Hold back an incomplete UTF-8 sequence (decoded as U+FFFD) and any
        // tail that could be the start of a stop sequence.
        let mut end = text.len();
        if text.ends_with('\u{FFFD}') {
            end = text.trim_end_matches('\u{FFFD}').len();
        }
        let base = end;
        let mut hold = 0;
        for s in stops {
            for k in (1..s.len()).rev() {
                if k <= base - start.min(base)
                    && text.is_char_boundary(base - k)
                    && s.as_bytes().starts_with(&text.as_bytes()[base - k..base])
                {
                    hold = hold.max(k);
                    break;
                }
            }
        }
        end = base - hold;
        if end > start {
            let piece = &text[start..end];
            self.emitted.push_str(piece);
            if on_text(piece).is_break() {
                return Step::Cancelled;
            }
        }
        Step::Continue
    }

    fn flush(
        &mut self,
        text: String,
        on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if let Some(rest) = text.strip_prefix(self.emitted.as_str()) {
            if !rest.is_empty() {
                self.emitted.push_str(rest);
                return on_text(rest);
            }
        }
        ControlFlow::Continue(())
    }

    fn finish(self, prompt_tokens: usize, completion_tokens: usize, finish: Finish) -> Generation {
        Generation {
            text: self.emitted,
            prompt_tokens,
            completion_tokens,
            finish,
        }
    }
}
