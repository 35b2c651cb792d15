//! Tests on tiny random-weight models written by the tests themselves, going
//! through the real loading code (safetensors + tokenizer.json for BERT, a
//! GGUF with tokenizer metadata and Q4_1/F32 tensors for llama).

use std::ops::ControlFlow;
use std::path::PathBuf;

use candle_core::quantized::gguf_file;
use models::fixtures::{write_tiny_embedder, write_tiny_generator, TinyLlama};
use models::{Architecture, ChatMessage, Embedder, Finish, GenerateOptions, Generator, Role};

// ---------------------------------------------------------------- helpers

fn tiny_bert() -> (tempfile::TempDir, Embedder) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_embedder(dir.path()).unwrap();
    let e = Embedder::load(dir.path()).unwrap();
    (dir, e)
}
fn tiny_llama(context: u32) -> (tempfile::TempDir, PathBuf, TinyLlama) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let t = write_tiny_generator(&path, context, 7).unwrap();
    (dir, path, t)
}

fn user(s: &str) -> ChatMessage {
    ChatMessage::new(Role::User, s)
}

fn run(
    g: &mut Generator,
    msgs: &[ChatMessage],
    opts: &GenerateOptions,
) -> (models::Generation, String) {
    let mut streamed = String::new();
    let out = g
        .chat(msgs, opts, &mut |t| {
            streamed.push_str(t);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        out.text, streamed,
        "the result is exactly what was streamed"
    );
    (out, streamed)
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---------------------------------------------------------------- embedder

#[test]
fn embeddings_are_unit_length_with_the_model_dim() {
    let (_d, e) = tiny_bert();
    assert_eq!(e.dim(), 32);
    let v = e
        .embed(&["the cat sat on the mat", "hello world", ""])
        .unwrap();
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x.len(), 32);
        let n: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "norm {n}");
    }
    assert!(e.embed(&[]).unwrap().is_empty());
}

#[test]
fn mean_pooling_ignores_padding() {
    let (_d, e) = tiny_bert();
    let alone = e.embed(&["the cat"]).unwrap();
    let batch = e
        .embed(&[
            "the cat",
            "a very long sentence with many many many words , the dog sat on a mat .",
        ])
        .unwrap();
    let diff = alone[0]
        .iter()
        .zip(&batch[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "padding changed the vector by {diff}");
    assert!(cos(&batch[0], &batch[1]) < 0.9999);
}

#[test]
fn batches_of_more_than_32_match_single_calls() {
    let (_d, e) = tiny_bert();
    let texts: Vec<String> = (0..70)
        .map(|i| "the cat sat on the mat ".repeat(1 + i % 5))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let all = e.embed(&refs).unwrap();
    assert_eq!(all.len(), 70);
    for i in [0, 31, 32, 33, 69] {
        let one = e.embed(&[refs[i]]).unwrap();
        assert!(cos(&one[0], &all[i]) > 0.99999, "text {i}");
    }
}

#[test]
fn long_input_is_truncated_at_max_length() {
    let (_d, mut e) = tiny_bert();
    // The tiny model has 64 positions, so the default (256) is capped.
    assert_eq!(e.max_length(), 64);
    let long = "the cat sat on the mat ".repeat(100);
    let v = e.embed(&[&long]).unwrap();
    assert_eq!(v[0].len(), 32);
    e.set_max_length(8).unwrap();
    let a = e.embed(&["the cat sat on the mat hello world"]).unwrap();
    let b = e
        .embed(&["the cat sat on the mat dog dog dog dog"])
        .unwrap();
    // [CLS] + 6 words + [SEP] = 8: the rest is cut, so both are the same.
    assert!(cos(&a[0], &b[0]) > 0.99999);
    assert_eq!(e.set_max_length(1000).unwrap_err().kind(), "input");
}

#[test]
fn missing_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_embedder(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = Embedder::load(dir.path()).err().unwrap();
    assert_eq!(err.kind(), "missing");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let err = Embedder::load(dir.path()).err().unwrap();
    assert_eq!(err.kind(), "format");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    let err = Embedder::load(&dir.path().join("nope")).err().unwrap();
    assert_eq!(err.kind(), "missing");
    assert!(err.to_string().contains("nope"), "{err}");
}

// ---------------------------------------------------------------- generator

#[test]
fn gguf_tokenizer_encodes_like_the_original() {
    let (_d, path, t) = tiny_llama(256);
    let g = Generator::load_file(&path).unwrap();
    let id = |s: &str| t.tokens.iter().position(|x| x == s).unwrap() as u32;
    let ids = g
        .encode("<|im_start|>user\nthe cat 12<|im_end|>\n")
        .unwrap();
    let expect = vec![
        1,
        id("u"),
        id("s"),
        id("e"),
        id("r"),
        id("Ċ"),
        id("t"),
        id("he"),
        id("Ġcat"),
        id("Ġ"),
        // Digits are split one by one even though a "12" merge exists.
        id("1"),
        id("2"),
        2,
        id("Ċ"),
    ];
    assert_eq!(ids, expect);
    assert_eq!(g.decode(&ids).unwrap(), "user\nthe cat 12\n");
    assert_eq!(g.count_tokens(" the").unwrap(), 1);
}

#[test]
fn chat_template_is_rendered_from_the_gguf() {
    let (_d, path, _) = tiny_llama(256);
    let g = Generator::load_file(&path).unwrap();
    let p = g.render_chat(&[user("hi")]).unwrap();
    assert_eq!(
        p,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    let p = g
        .render_chat(&[ChatMessage::new(Role::System, "S"), user("hi")])
        .unwrap();
    assert_eq!(
        p,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn greedy_generation_is_deterministic_and_hits_max_tokens() {
    let (_d, path, _) = tiny_llama(256);
    let mut g = Generator::load_file(&path).unwrap();
    assert_eq!(g.context_length(), 256);
    assert!(
        g.quantization().contains("kept as") && g.quantization().contains("Q4_1"),
        "{}",
        g.quantization()
    );
    let opts = GenerateOptions {
        max_tokens: 12,
        ..Default::default()
    };
    let (a, _) = run(&mut g, &[user("the cat")], &opts);
    let (b, _) = run(&mut g, &[user("the cat")], &opts);
    assert_eq!(a.text, b.text);
    assert!(!a.text.is_empty());
    assert_eq!(a.finish, Finish::Length);
    assert_eq!(a.completion_tokens, 12);
    assert_eq!(
        a.prompt_tokens,
        g.count_tokens(&g.render_chat(&[user("the cat")]).unwrap())
            .unwrap()
    );
}

#[test]
fn seeded_sampling_repeats_and_seeds_differ() {
    let (_d, path, _) = tiny_llama(256);
    let mut g = Generator::load_file(&path).unwrap();
    let opts = |seed| GenerateOptions {
        max_tokens: 24,
        temperature: 1.5,
        top_p: Some(0.95),
        seed,
        stop: vec![],
    };
    let (a, _) = run(&mut g, &[user("hello")], &opts(1));
    let (b, _) = run(&mut g, &[user("hello")], &opts(1));
    let (c, _) = run(&mut g, &[user("hello")], &opts(2));
    assert_eq!(a.text, b.text);
    assert_ne!(a.text, c.text);
}

#[test]
fn stop_sequences_cut_the_output() {
    let (_d, path, _) = tiny_llama(256);
    let mut g = Generator::load_file(&path).unwrap();
    let base = GenerateOptions {
        max_tokens: 30,
        ..Default::default()
    };
    let (full, _) = run(&mut g, &[user("the cat")], &base);
    let chars: Vec<char> = full.text.chars().collect();
    assert!(chars.len() >= 8, "{:?}", full.text);
    let stop: String = chars[5..7].iter().collect();
    let at = full.text.find(&stop).unwrap();
    let opts = GenerateOptions {
        stop: vec!["never produced \u{1}".into(), stop.clone()],
        ..base
    };
    let (cut, streamed) = run(&mut g, &[user("the cat")], &opts);
    assert_eq!(cut.text, full.text[..at], "stop {stop:?}");
    assert_eq!(streamed, cut.text);
    assert_eq!(cut.finish, Finish::Stop);
    assert!(!cut.text.contains(&stop));
}

#[test]
fn break_cancels() {
    let (_d, path, _) = tiny_llama(256);
    let mut g = Generator::load_file(&path).unwrap();
    let mut pieces = 0;
    let out = g
        .chat(
            &[user("the cat")],
            &GenerateOptions {
                max_tokens: 64,
                ..Default::default()
            },
            &mut |_| {
                pieces += 1;
                ControlFlow::Break(())
            },
        )
        .unwrap();
    assert_eq!(out.finish, Finish::Cancelled);
    assert_eq!(pieces, 1);
    assert!(!out.text.is_empty());
    assert!(out.completion_tokens < 5);
}

#[test]
fn context_overflow_drops_old_messages_then_errors() {
    let (_d, path, _) = tiny_llama(128);
    let mut g = Generator::load_file(&path).unwrap();
    let sys = ChatMessage::new(Role::System, "be brief");
    let mut msgs = vec![sys.clone()];
    for i in 0..6 {
        msgs.push(user(&format!("question number {i} about things")));
        msgs.push(ChatMessage::new(
            Role::Assistant,
            format!("answer number {i} here"),
        ));
    }
    msgs.push(user("last question"));
    let full = g.count_tokens(&g.render_chat(&msgs).unwrap()).unwrap();
    assert!(full > 128, "{full}");
    let opts = GenerateOptions {
        max_tokens: 8,
        ..Default::default()
    };
    let (out, _) = run(&mut g, &msgs, &opts);
    assert!(out.prompt_tokens <= 120, "{}", out.prompt_tokens);
    // The prompt used is the system message plus the newest messages.
    let kept = (1..msgs.len()).find(|&k| {
        let mut m = vec![sys.clone()];
        m.extend_from_slice(&msgs[k..]);
        g.count_tokens(&g.render_chat(&m).unwrap()).unwrap() == out.prompt_tokens
    });
    assert!(kept.is_some());

    let long = "word ".repeat(100);
    let err = g
        .chat(&[sys, user(&long)], &opts, &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
    assert_eq!(err.kind(), "context");
    assert!(err.to_string().contains("tiny.gguf"), "{err}");
    let big = GenerateOptions {
        max_tokens: 1000,
        ..Default::default()
    };
    let err = g
        .chat(&[user("hi")], &big, &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert_eq!(err.kind(), "context");
}

#[test]
fn bad_or_missing_gguf_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Generator::load(dir.path()).err().unwrap();
    assert_eq!(err.kind(), "missing");
    assert!(err.to_string().contains(&dir.path().display().to_string()));

    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF but not really").unwrap();
    let err = Generator::load(dir.path()).err().unwrap();
    assert_eq!(err.kind(), "format");
    assert!(err.to_string().contains("bad.gguf"), "{err}");

    write_tiny_generator(&dir.path().join("second.gguf"), 64, 7).unwrap();
    let err = Generator::load(dir.path()).err().unwrap();
    assert_eq!(err.kind(), "format");
    assert!(err.to_string().contains("exactly one"), "{err}");

    let err = Generator::load_file(&dir.path().join("absent.gguf"))
        .err()
        .unwrap();
    assert_eq!(err.kind(), "missing");
    assert!(err.to_string().contains("absent.gguf"), "{err}");
    std::fs::remove_file(&bad).unwrap();
    assert!(Generator::load(dir.path()).is_ok());
}

#[test]
fn invalid_options_are_refused() {
    let (_d, path, _) = tiny_llama(256);
    let mut g = Generator::load_file(&path).unwrap();
    let opts = GenerateOptions {
        temperature: -1.0,
        ..Default::default()
    };
    let err = g
        .chat(&[user("x")], &opts, &mut |_| ControlFlow::Continue(()))
        .unwrap_err();
    assert_eq!(err.kind(), "input");
    let err = g
        .chat(&[], &GenerateOptions::default(), &mut |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
    assert_eq!(err.kind(), "input");
}

#[test]
fn options_serialise_with_lowercase_roles() {
    let m = ChatMessage::new(Role::Assistant, "x");
    assert_eq!(
        serde_json::to_string(&m).unwrap(),
        r#"{"role":"assistant","content":"x"}"#
    );
    let o = GenerateOptions::default();
    assert_eq!(
        (o.max_tokens, o.temperature, o.top_p, o.seed, o.stop.len()),
        (256, 0.0, None, 42, 0)
    );
    assert_eq!(
        serde_json::to_string(&Finish::Length).unwrap(),
        r#""length""#
    );
}

/// Rewrites the GGUF at `src` to `dst` with `edit` applied to its metadata
/// (tensors unchanged).
fn rewrite_gguf(
    src: &std::path::Path,
    dst: &std::path::Path,
    edit: impl FnOnce(&mut std::collections::HashMap<String, gguf_file::Value>),
) {
    let mut f = std::fs::File::open(src).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let mut md = ct.metadata.clone();
    edit(&mut md);
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = ct
        .tensor_infos
        .keys()
        .map(|n| {
            let t = ct.tensor(&mut f, n, &candle_core::Device::Cpu).unwrap();
            (n.clone(), t)
        })
        .collect();
    let md_refs: Vec<(&str, &gguf_file::Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::fs::File::create(dst).unwrap();
    gguf_file::write(&mut out, &md_refs, &t_refs).unwrap();
}

#[test]
fn inspect_summarises_a_good_file() {
    let (_d, path, t) = tiny_llama(256);
    let s = models::inspect(&path).unwrap();
    assert_eq!(s.architecture, Architecture::Llama);
    assert_eq!(s.context_length, 256);
    assert_eq!(s.vocabulary, t.tokens.len());
    assert!(s.stored.contains_key("Q4_1") && s.stored.contains_key("F32"));
    assert!(s.stored_types().contains("×Q4_1"), "{}", s.stored_types());
}

#[test]
fn malformed_gguf_files_are_refused_with_the_reason() {
    let (dir, good, _) = tiny_llama(256);
    let bad = dir.path().join("bad.gguf");
    let refused = |want: &str| {
        let err = models::inspect(&bad).expect_err("refused by inspect");
        assert_eq!(err.kind(), "format", "{err}");
        assert!(err.to_string().contains(want), "{err}");
        let err = Generator::load_file(&bad).err().expect("refused at load");
        assert!(err.to_string().contains(want), "{err}");
    };
    let set = |k: &str, v: gguf_file::Value| {
        let k = k.to_string();
        rewrite_gguf(&good, &bad, move |md| {
            md.insert(k, v);
        })
    };

    set(
        "general.architecture",
        gguf_file::Value::String("mamba".into()),
    );
    refused("architecture \"mamba\" is not supported");

    set("llama.context_length", gguf_file::Value::U32(0));
    refused("llama.context_length is 0");

    // More tokens than embedding rows.
    let mut md = {
        let mut f = std::fs::File::open(&good).unwrap();
        gguf_file::Content::read(&mut f).unwrap().metadata
    };
    let Some(gguf_file::Value::Array(mut tokens)) = md.remove("tokenizer.ggml.tokens") else {
        panic!("no tokens")
    };
    tokens.push(gguf_file::Value::String("extra".into()));
    set("tokenizer.ggml.tokens", gguf_file::Value::Array(tokens));
    refused("only");

    // Truncated: the last tensor runs past the end.
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
    refused("runs past the end of the file");

    // An unknown tensor type code: candle refuses it while reading the header.
    let ct = {
        let mut f = std::fs::File::open(&good).unwrap();
        gguf_file::Content::read(&mut f).unwrap()
    };
    let (name, _) = ct.tensor_infos.iter().next().unwrap();
    let at = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .unwrap();
    let dims = ct.tensor_infos[name].shape.rank();
    // name, then n_dims (u32), dims (u64 each), then the type (u32).
    let ty = at + name.len() + 4 + 8 * dims;
    let mut broken = bytes.clone();
    broken[ty..ty + 4].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&bad, &broken).unwrap();
    refused("unknown dtype");

    // Nothing was changed in the good file, which still loads.
    assert!(Generator::load_file(&good).is_ok());
}
