//! models-bench: measures the Tier A models on this machine.
//!
//! ```text
//! models-bench generate MODELS_SRC_DIR   # prompt tok/s, decode tok/s, peak RSS (one JSON line)
//! models-bench embed MODELS_SRC_DIR [BACKEND]  # sentences/s over 1,000 sentences, peak RSS
//! models-bench sentences                 # the 1,000 sentences, one per line (for baselines)
//! models-bench backends                  # the embedder's backends on this machine
//! ```
//!
//! MODELS_SRC_DIR is the `src` directory `ci/fetch-models.sh` lays out.
//! `ci/bench-models.sh` runs this next to the Python baselines.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use models::{Backend, ChatMessage, Embedder, GenerateOptions, Generator, Role};

/// Decode length measured.
const DECODE_TOKENS: usize = 128;
/// Sentences embedded.
const SENTENCES: usize = 1000;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn sentences() -> Vec<String> {
    const SUBJECTS: &[&str] = &[
        "The supplier",
        "Our compliance team",
        "The declaration of conformity",
        "A safety data sheet",
        "The product passport",
        "Each component",
        "The auditor",
        "The customer",
    ];
    const VERBS: &[&str] = &[
        "lists",
        "must report",
        "does not mention",
        "was updated to include",
        "restricts",
        "documents the use of",
    ];
    const OBJECTS: &[&str] = &[
        "lead in the solder alloy",
        "substances of very high concern above 0.1 percent by weight",
        "the REACH Annex XVII entry for phthalates",
        "cadmium in the pigment of the housing",
        "the RoHS exemption for mercury in lamps",
        "a new revision of the material declaration, signed by the quality manager last week",
        "PFAS used as a processing aid",
    ];
    (0..SENTENCES)
        .map(|i| {
            let s = SUBJECTS[i % SUBJECTS.len()];
            let v = VERBS[(i / 3) % VERBS.len()];
            let o = OBJECTS[(i / 7) % OBJECTS.len()];
            if i % 4 == 0 {
                format!("{s} {v} {o}, according to record {i} of the supplier portal.")
            } else {
                format!("{s} {v} {o}.")
            }
        })
        .collect()
}

fn chat_messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(
            Role::System,
            "You are a careful assistant for product compliance officers. Answer in plain English.",
        ),
        ChatMessage::new(
            Role::User,
            "Our supplier sent a material declaration for a cable harness. It lists lead in the solder, \
             a brominated flame retardant in the sleeve and DEHP in the insulation. Explain, step by step, \
             which EU rules may apply and what we should ask the supplier next.",
        ),
    ]
}

fn generate(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let mut g = Generator::load(&dir.join("smollm2-135m-instruct"))?;
    let load_s = t.elapsed().as_secs_f64();
    let msgs = chat_messages();
    let prompt = g.render_chat(&msgs)?;
    let opts = GenerateOptions {
        max_tokens: DECODE_TOKENS,
        ..Default::default()
    };
    // Warm-up run (page in weights, allocate caches).
    g.chat(
        &msgs,
        &GenerateOptions {
            max_tokens: 4,
            ..Default::default()
        },
        &mut |_| ControlFlow::Continue(()),
    )?;
    let mut best_prompt = f64::MAX;
    let mut best_decode = f64::MAX;
    let mut tokens = 0;
    let mut prompt_tokens = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let mut first: Option<Instant> = None;
        let out = g.chat(&msgs, &opts, &mut |_| {
            first.get_or_insert_with(Instant::now);
            ControlFlow::Continue(())
        })?;
        let end = Instant::now();
        let first = first.unwrap_or(end);
        // Time to the first piece is the prompt plus one sampled token.
        best_prompt = best_prompt.min((first - start).as_secs_f64());
        best_decode = best_decode.min((end - first).as_secs_f64());
        tokens = out.completion_tokens;
        prompt_tokens = out.prompt_tokens;
    }
    let decode_tps = (tokens.saturating_sub(1)) as f64 / best_decode;
    let prompt_tps = prompt_tokens as f64 / best_prompt;
    println!(
        "{}",
        serde_json::json!({
            "bench": "generate",
            "quantization": g.quantization(),
            "load_s": load_s,
            "prompt": prompt,
            "prompt_tokens": prompt_tokens,
            "prompt_tok_s": prompt_tps,
            "decode_tokens": tokens,
            "decode_tok_s": decode_tps,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}

fn embed(dir: &Path, backend: Option<&str>) -> Result<(), Box<dyn std::error::Error>> {
    let backend = match backend {
        None => Backend::detect(),
        Some(name) => Backend::available()
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| format!("backend {name} is not available here"))?,
    };
    let e = Embedder::load_with(&dir.join("all-minilm-l6-v2"), backend)?;
    let s = sentences();
    let refs: Vec<&str> = s.iter().map(String::as_str).collect();
    e.embed(&refs[..64])?;
    let mut best = f64::MAX;
    for _ in 0..2 {
        let t = Instant::now();
        let v = e.embed(&refs)?;
        best = best.min(t.elapsed().as_secs_f64());
        if v.len() != SENTENCES {
            return Err(format!("{} vectors for {SENTENCES} sentences", v.len()).into());
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "embed",
            "backend": backend.name(),
            "sentences": SENTENCES,
            "batch": models::BATCH_SIZE,
            "sentences_s": SENTENCES as f64 / best,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(2).map(Path::new);
    let r = match (args.get(1).map(String::as_str), dir) {
        (Some("generate"), Some(d)) => generate(d),
        (Some("embed"), Some(d)) => embed(d, args.get(3).map(String::as_str)),
        (Some("backends"), _) => {
            for b in Backend::available() {
                println!("{}", b.name());
            }
            Ok(())
        }
        (Some("sentences"), _) => {
            for s in sentences() {
                println!("{s}");
            }
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: models-bench generate MODELS_SRC_DIR | models-bench embed MODELS_SRC_DIR [BACKEND] | models-bench sentences|backends"
            );
            return std::process::ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("models-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
