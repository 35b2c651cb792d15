//! Tests on the real Tier A models, run when `EUROCOMPLY_MODELS_DIR` points at
//! the `src` directory `ci/fetch-models.sh` lays out (skipped otherwise).

use std::ops::ControlFlow;
use std::path::PathBuf;

use models::{Backend, ChatMessage, Embedder, Finish, GenerateOptions, Generator, Role};

fn models_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os("EUROCOMPLY_MODELS_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!("{test}: skipped: set EUROCOMPLY_MODELS_DIR to DEST/src of ci/fetch-models.sh to run it");
            None
        }
    }
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn chat_knows_the_capital_of_france() {
    let Some(dir) = models_dir("chat_knows_the_capital_of_france") else {
        return;
    };
    let mut g = Generator::load(&dir.join("smollm2-135m-instruct")).unwrap();
    assert_eq!(g.context_length(), 4096);
    let msgs = [ChatMessage::new(
        Role::User,
        "What is the capital of France?",
    )];
    let opts = GenerateOptions {
        max_tokens: 48,
        ..Default::default()
    };
    let mut streamed = String::new();
    let out = g
        .chat(&msgs, &opts, &mut |t| {
            streamed.push_str(t);
            ControlFlow::Continue(())
        })
        .unwrap();
    eprintln!("{out:?}");
    assert!(out.text.contains("Paris"), "{:?}", out.text);
    assert_eq!(out.text, streamed);
    assert!(matches!(out.finish, Finish::Stop | Finish::Length));
    // Seeded sampling is exactly repeatable.
    let sampled = GenerateOptions {
        max_tokens: 24,
        temperature: 0.8,
        top_p: Some(0.9),
        seed: 7,
        stop: vec![],
    };
    let a = g
        .chat(&msgs, &sampled, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    let b = g
        .chat(&msgs, &sampled, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(a.text, b.text);
}

/// Reference ids from an independent tokenizer built from the same GGUF
/// (transformers' GGUF tokenizer conversion; the fixture's "source" says
/// which version). llama.cpp's own ids could not be pinned: llama-cpp-python
/// did not finish building here in time.
#[test]
fn tokenizer_matches_the_reference() {
    let Some(dir) = models_dir("tokenizer_matches_the_reference") else {
        return;
    };
    let g = Generator::load(&dir.join("smollm2-135m-instruct")).unwrap();
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/smollm2-token-ids.json")).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(g.encode(text).unwrap(), want, "{text:?}");
    }
}

#[test]
fn embeddings_match_sentence_transformers() {
    let Some(dir) = models_dir("embeddings_match_sentence_transformers") else {
        return;
    };
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/minilm-reference.json")).unwrap();
    let sentences: Vec<&str> = fixture["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for backend in Backend::available() {
        let e = Embedder::load_with(&dir.join("all-minilm-l6-v2"), backend).unwrap();
        assert_eq!(e.backend(), backend);
        assert_eq!(e.dim(), 384);
        assert_eq!(e.max_length(), 256);
        let got = e.embed(&sentences).unwrap();
        for (i, want) in fixture["vectors"].as_array().unwrap().iter().enumerate() {
            let want: Vec<f32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let c = cos(&got[i], &want);
            assert!(c >= 0.999, "{} sentence {i}: cosine {c}", backend.name());
        }
    }
}

#[test]
fn paraphrases_are_closer_than_unrelated_sentences() {
    let Some(dir) = models_dir("paraphrases_are_closer_than_unrelated_sentences") else {
        return;
    };
    let e = Embedder::load(&dir.join("all-minilm-l6-v2")).unwrap();
    let v = e
        .embed(&[
            "The supplier must declare substances of very high concern.",
            "Suppliers have to report SVHCs they use.",
            "The weather in Lisbon was sunny all week.",
            "A dog is playing in the park.",
            "A puppy runs around on the grass.",
        ])
        .unwrap();
    assert!(cos(&v[0], &v[1]) > cos(&v[0], &v[2]));
    assert!(cos(&v[3], &v[4]) > cos(&v[3], &v[0]));
    assert!(cos(&v[3], &v[4]) > cos(&v[3], &v[2]));
}

/// Gemma 3 270M is a base model and its GGUF carries no chat template: a
/// bare question gets a continuation, not an answer, from llama.cpp as from
/// us (llama.cpp 0.3.36 greedy: "What is the capital of France? mendatang…").
/// One example turn makes it answer; llama.cpp then says "The capital of
/// France is Paris.".
#[test]
fn gemma3_k_quants_know_the_capital_of_france() {
    let Some(dir) = models_dir("gemma3_k_quants_know_the_capital_of_france") else {
        return;
    };
    let mut g = Generator::load(&dir.join("gemma3-270m")).unwrap();
    assert!(g.quantization().contains("Q4K"), "{}", g.quantization());
    // The same ids as llama.cpp's tokenizer on the same file.
    assert_eq!(
        g.encode("The capital of France is").unwrap(),
        [818, 5279, 529, 7001, 563]
    );
    let msgs = [
        ChatMessage::new(Role::User, "What is the capital of Italy?"),
        ChatMessage::new(Role::Assistant, "The capital of Italy is Rome."),
        ChatMessage::new(Role::User, "What is the capital of France?"),
    ];
    let opts = GenerateOptions {
        max_tokens: 16,
        ..Default::default()
    };
    let out = g
        .chat(&msgs, &opts, &mut |_| ControlFlow::Continue(()))
        .unwrap();
    eprintln!("{out:?}");
    // BOS and the turns: the 40 tokens llama.cpp's tokenizer makes of the
    // same prompt text.
    assert_eq!(out.prompt_tokens, 40);
    assert!(out.text.contains("Paris"), "{:?}", out.text);
}
