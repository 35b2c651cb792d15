//! Runs the held-out answer evaluation against a spoke's data directory
//! (its models imported and the set's documents added, as
//! `ci/ask-eval.sh` prepares it) and prints the measures.

use appliance::{Actor, Appliance, DataDir};
use clap::Parser;
use gateway::eval::{score, summary, Question};
use gateway::{Gateway, GenerateOptions};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// Asks every question of an evaluation set and scores the answers.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The spoke's data directory.
    #[arg(long)]
    data: PathBuf,
    /// The question file.
    #[arg(long, default_value = "appliance/gateway/eval/questions.json")]
    questions: PathBuf,
    /// Print every result and the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASK_EVAL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.questions)
        .map_err(|e| format!("cannot read {}: {e}", args.questions.display()))?;
    let questions: Vec<Question> = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a question set: {e}", args.questions.display()))?;
    let app = Mutex::new(Appliance::open(&DataDir::new(&args.data))?);
    let gw = Gateway::new(1);
    let actor = Actor::cli();
    let opts = GenerateOptions {
        max_tokens: 96,
        ..GenerateOptions::default()
    };
    // Passage vectors and model loading are set-up, not answer time.
    gw.index_passages(&app)?;
    let mut results = Vec::new();
    for q in &questions {
        let t = Instant::now();
        let answer = gw.ask(&app, &actor, &q.question, &opts, &mut |_| {
            ControlFlow::Continue(())
        })?;
        let r = score(q, &answer, t.elapsed().as_millis());
        if !args.json {
            let mark = if r.correct { "ok  " } else { "MISS" };
            println!("{mark} {} {} -> {}", q.id, q.question, r.answer);
        }
        results.push(r);
    }
    let s = summary(&questions, &results);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "summary": s, "results": results }))?
        );
    } else {
        println!("\n{}", serde_json::to_string_pretty(&s)?);
    }
    if s.unsupported_shown > 0 {
        return Err(format!(
            "{} shown statements are not supported by the passages they cite",
            s.unsupported_shown
        )
        .into());
    }
    Ok(())
}
