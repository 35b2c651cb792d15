//! `spoke ai …` and `spoke models …`: the local models from the command
//! line, through the same gateway the API uses.

use crate::cli::{open, out};
use crate::Error;
use appliance::Actor;
use clap::Subcommand;
use gateway::{ChatMessage, Gateway, GenerateOptions, Role};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Mutex;

/// Generation settings shared by `chat` and `ask`.
#[derive(Debug, clap::Args)]
pub struct Sampling {
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy (the same answer every time); higher samples more freely.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Sampling seed: the same seed and settings give the same text.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl Sampling {
    fn options(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            seed: self.seed,
            ..GenerateOptions::default()
        }
    }
}

/// `spoke ai …`.
#[derive(Debug, Subcommand)]
pub enum AiCommand {
    /// Active models, passage vectors, today's requests and the plan's limit.
    Status {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Sentence vectors for texts.
    Embed {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// The texts.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// One chat turn with the local model, streamed to the terminal.
    Chat {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// A system message to put first.
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        sampling: Sampling,
        /// The user's message.
        message: String,
    },
    /// A grounded answer from the spoke's documents, with citations.
    Ask {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        sampling: Sampling,
        /// The question.
        question: String,
    },
    /// Compute the passage vectors documents lack (ask does this too).
    Index {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
}

/// `spoke models …`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Installed model bundles and which is active per task.
    List {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
    },
    /// Make an installed model the active one for its task (atomic switch).
    Activate {
        /// Data directory.
        #[arg(long)]
        data: PathBuf,
        /// CID, name@version, or name (its newest version).
        model: String,
    },
}

/// Prints text pieces as they come, unless the output is JSON.
fn printer(json: bool) -> impl FnMut(&str) -> ControlFlow<()> {
    move |t: &str| {
        if !json {
            let mut o = std::io::stdout().lock();
            // A closed stdout stops the generation.
            if o.write_all(t.as_bytes()).and_then(|()| o.flush()).is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// An answer as text: each statement on its own line under what it is
/// (a quote, a record line, the model's checked words), then the sources.
fn answer_text(a: &gateway::Answer) -> String {
    let mut lines = Vec::new();
    for s in &a.statements {
        let label = match s.kind {
            gateway::Kind::Quoted => "quote",
            gateway::Kind::Record => "record",
            gateway::Kind::Generated => "model (checked)",
            gateway::Kind::None => "answer",
        };
        let cites: String = s.citations.iter().map(|n| format!(" [{n}]")).collect();
        let text = s.text.split_whitespace().collect::<Vec<_>>().join(" ");
        lines.push(format!("{label}: {text}{cites}"));
    }
    lines.push(String::new());
    lines.push("Sources:".to_string());
    for c in &a.citations {
        let p = &c.passage;
        let place = match p.source {
            appliance::ai::Source::Document => {
                format!("passage {}, bytes {}..{}", p.ord, p.start, p.end)
            }
            appliance::ai::Source::Entity => format!("record {}", p.document),
            appliance::ai::Source::Lock => format!("Compliance Lock {}", p.document),
        };
        let mark = if c.cited { "*" } else { " " };
        lines.push(format!("[{}]{mark} {} ({place})", c.n, p.filename));
    }
    lines.push(match &a.generation_model {
        Some(m) => format!(
            "model {}@{} ({}), checked against the sources; retrieval {}",
            m.name, m.version, m.cid, a.retrieval
        ),
        None => format!("quoted from the sources; retrieval {}", a.retrieval),
    });
    lines.join("\n")
}

/// Runs one `spoke ai` command.
pub(crate) fn ai(json: bool, command: AiCommand) -> Result<(), Error> {
    let actor = Actor::cli();
    let gw = Gateway::new(1);
    match command {
        AiCommand::Status { data } => {
            let app = Mutex::new(open(&data)?);
            let s = gw.status(&app)?;
            out(json, &s, |s| {
                let m = |r: &Option<gateway::ModelRef>| {
                    r.as_ref().map_or("none installed".to_string(), |m| {
                        format!("{}@{} ({})", m.name, m.version, m.cid)
                    })
                };
                format!(
                    "embedding  {} on {}\ngeneration {}\npassages   {} ({} with vectors)\nrequests   {} today{}\ntier B     {}",
                    m(&s.embedding),
                    s.embedding_backend,
                    m(&s.generation),
                    s.passages,
                    s.embedded_passages,
                    s.requests_today,
                    s.daily_limit.map_or(String::new(), |l| format!(" of {l}")),
                    s.tier_b
                )
            })
        }
        AiCommand::Embed { data, texts } => {
            let app = Mutex::new(open(&data)?);
            let e = gw.embed(&app, &actor, &texts)?;
            out(json, &e, |e| {
                e.vectors
                    .iter()
                    .zip(&texts)
                    .map(|(v, t)| {
                        let head: Vec<String> =
                            v.iter().take(4).map(|x| format!("{x:.4}")).collect();
                        format!("[{}, … {} dims] {t}", head.join(", "), e.dim)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        AiCommand::Chat {
            data,
            system,
            sampling,
            message,
        } => {
            let app = Mutex::new(open(&data)?);
            let mut messages: Vec<ChatMessage> = system
                .map(|content| ChatMessage {
                    role: Role::System,
                    content,
                })
                .into_iter()
                .collect();
            messages.push(ChatMessage {
                role: Role::User,
                content: message,
            });
            let chat = gw.chat(
                &app,
                &actor,
                &messages,
                &sampling.options(),
                &mut printer(json),
            )?;
            out(json, &chat, |c| {
                format!(
                    "\n-- {} ({}), {} prompt + {} generated tokens, finished: {:?}",
                    c.model.name,
                    c.model.cid,
                    c.generation.prompt_tokens,
                    c.generation.completion_tokens,
                    c.generation.finish
                )
            })
        }
        AiCommand::Ask {
            data,
            sampling,
            question,
        } => {
            let app = Mutex::new(open(&data)?);
            // Statements are shown only once checked, so nothing streams.
            let answer = gw.ask(&app, &actor, &question, &sampling.options(), &mut |_| {
                ControlFlow::Continue(())
            })?;
            out(json, &answer, answer_text)
        }
        AiCommand::Index { data } => {
            let app = Mutex::new(open(&data)?);
            let n = gw.index_passages(&app)?;
            out(json, &serde_json::json!({ "embedded": n }), |_| {
                format!("computed {n} passage vectors")
            })
        }
    }
}

/// Runs one `spoke models` command.
pub(crate) fn models(json: bool, command: ModelsCommand) -> Result<(), Error> {
    let (data, which) = match command {
        ModelsCommand::List { data } => (data, None),
        ModelsCommand::Activate { data, model } => (data, Some(model)),
    };
    let mut a = open(&data)?;
    if let Some(which) = which {
        let m = a.activate_model(&Actor::cli(), &which, &gateway::SmokeTest)?;
        return out(json, &m, |m| {
            format!(
                "{} is now the active {} model ({})",
                m.label(),
                m.task.as_str(),
                m.cid
            )
        });
    }
    let models = a.models()?;
    out(json, &models, |ms| {
        if ms.is_empty() {
            return "no models installed; import a model bundle".into();
        }
        ms.iter()
            .map(|m| {
                format!(
                    "{} {:10} {:32} {:10} {}",
                    if m.active { "*" } else { " " },
                    m.task.as_str(),
                    m.name,
                    m.version,
                    m.cid
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}
