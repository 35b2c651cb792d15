//! The AI endpoints: embeddings, chat streamed as server-sent events, and
//! grounded answers with citations, all through the gateway, plus the
//! installed models and which one is active. Errors that happen before the
//! model produces anything (no model, busy, quota) are plain HTTP errors;
//! a chat that fails midway ends its stream with an `error` event.

use crate::handlers::{ok, Body, Res};
use crate::{ApiError, AppState};
use appliance::Actor;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use gateway::{ChatMessage, GenerateOptions};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ai/status", get(status))
        .route("/api/v1/ai/embed", post(embed))
        .route("/api/v1/ai/chat", post(chat))
        .route("/api/v1/ai/ask", post(ask))
        .route("/api/v1/models", get(list_models))
        .route("/api/v1/models/active", axum::routing::put(activate))
}

/// Most tokens a request may ask the model for.
const MAX_TOKENS: usize = 1024;

/// Generation settings a request may give; the rest are the defaults.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Sampling {
    max_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    #[serde(default)]
    stop: Vec<String>,
}

impl Sampling {
    fn options(self) -> Result<GenerateOptions, ApiError> {
        let d = GenerateOptions::default();
        let o = GenerateOptions {
            max_tokens: self.max_tokens.unwrap_or(d.max_tokens),
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.or(d.top_p),
            seed: self.seed.unwrap_or(d.seed),
            stop: if self.stop.is_empty() {
                d.stop
            } else {
                self.stop
            },
        };
        let bad = |m: String| Err(ApiError::from(appliance::Error::Invalid(m)));
        if o.max_tokens == 0 || o.max_tokens > MAX_TOKENS {
            return bad(format!("max_tokens must be 1 to {MAX_TOKENS}"));
        }
        if !(0.0..=2.0).contains(&o.temperature) {
            return bad("temperature must be between 0 and 2".into());
        }
        if o.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return bad("top_p must be above 0 and at most 1".into());
        }
        if o.stop.len() > 8 || o.stop.iter().any(|s| s.is_empty() || s.len() > 64) {
            return bad("stop: at most 8 sequences of 1 to 64 bytes".into());
        }
        Ok(o)
    }
}

/// Runs `f` on the blocking pool with the appliance and the gateway.
async fn blocking<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(
            &std::sync::Mutex<appliance::Appliance>,
            &gateway::Gateway,
        ) -> Result<T, gateway::Error>
        + Send
        + 'static,
) -> Result<T, ApiError> {
    let app = Arc::clone(&s.appliance);
    let gw = Arc::clone(&s.gateway);
    crate::off_thread(move || f(&app, &gw).map_err(ApiError::from)).await
}

async fn status(State(s): State<AppState>) -> Res {
    ok(blocking(&s, |app, gw| gw.status(app)).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedRequest {
    texts: Vec<String>,
}

async fn embed(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(req): Body<EmbedRequest>,
) -> Res {
    ok(blocking(&s, move |app, gw| gw.embed(app, &actor, &req.texts)).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskRequest {
    question: String,
    #[serde(flatten)]
    sampling: Sampling,
}

async fn ask(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(req): Body<AskRequest>,
) -> Res {
    let opts = req.sampling.options()?;
    ok(blocking(&s, move |app, gw| {
        gw.ask(app, &actor, &req.question, &opts, &mut |_| {
            ControlFlow::Continue(())
        })
    })
    .await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(flatten)]
    sampling: Sampling,
}

/// What the generating thread hands the response stream.
enum Piece {
    Text(String),
    Done(Result<gateway::Chat, gateway::Error>),
}

fn event(piece: Piece) -> Event {
    let (name, data) = match piece {
        Piece::Text(text) => ("token", json!({ "text": text })),
        Piece::Done(Ok(chat)) => ("done", json!(chat)),
        Piece::Done(Err(e)) => (
            "error",
            json!({ "error": { "kind": e.kind(), "message": e.to_string() } }),
        ),
    };
    Event::default().event(name).data(data.to_string())
}

/// Streams the answer as server-sent events: `token` events with text
/// pieces, then one `done` event with the whole generation and the model's
/// digest (or `error`). A client that goes away stops the generation.
async fn chat(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(req): Body<ChatRequest>,
) -> Res {
    let opts = req.sampling.options()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(64);
    let app = Arc::clone(&s.appliance);
    let gw = Arc::clone(&s.gateway);
    tokio::task::spawn_blocking(move || {
        let mut on_text = |t: &str| match tx.blocking_send(Piece::Text(t.to_string())) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        };
        let result = gw.chat(&app, &actor, &req.messages, &opts, &mut on_text);
        let _ = tx.blocking_send(Piece::Done(result));
    });
    // An error before the first piece is an HTTP error, not a stream.
    let first = match rx.recv().await {
        Some(Piece::Done(Err(e))) => return Err(ApiError::from(e)),
        Some(p) => p,
        None => return Err(ApiError::internal("the generation ended without an answer")),
    };
    let stream = futures_util::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        let piece = match first {
            Some(p) => p,
            None => rx.recv().await?,
        };
        Some((Ok::<_, Infallible>(event(piece)), (None, rx)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn list_models(State(s): State<AppState>) -> Res {
    ok(s.run(|a| a.models()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Activate {
    model: String,
}

async fn activate(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(req): Body<Activate>,
) -> Res {
    ok(
        s.run(move |a| a.activate_model(&actor, &req.model, &gateway::SmokeTest))
            .await?,
    )
}
