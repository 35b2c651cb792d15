//! The MCP endpoint at `/mcp` (streamable HTTP, rmcp): tools for search,
//! entities, evaluation and grounded answers, so an assistant on the LAN can
//! use the spoke. It sits behind the same guard as the REST API: a bearer
//! token is required, and each tool checks the caller's role exactly as the
//! matching REST endpoint does.

use crate::AppState;
use appliance::{Actor, Permission};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler};
use serde_json::{json, Value};
use std::ops::ControlFlow;
use std::sync::Arc;

/// The MCP service for `/mcp`, on the session manager `sessions` watches.
pub(crate) fn service(
    state: AppState,
    manager: Arc<LocalSessionManager>,
) -> StreamableHttpService<Mcp, LocalSessionManager> {
    StreamableHttpService::new(
        move || Ok(Mcp(state.clone())),
        manager,
        StreamableHttpServerConfig::default(),
    )
}

/// Most MCP sessions one user may hold open at once: an assistant needs
/// one or two; each costs a worker task and buffers, so without a cap one
/// token could open them until the spoke runs out of memory.
pub const MAX_SESSIONS_PER_USER: usize = 8;

/// Which user opened which live MCP session, to cap sessions per user.
pub(crate) struct Sessions {
    manager: Arc<LocalSessionManager>,
    by_user: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
}

impl Sessions {
    pub(crate) fn new(manager: Arc<LocalSessionManager>) -> Sessions {
        Sessions {
            manager,
            by_user: Default::default(),
        }
    }

    /// Whether `user` may open another session; sessions rmcp has closed
    /// since (ended with DELETE, or idle past its keep-alive) are forgotten
    /// first.
    pub(crate) async fn admit(&self, user: &str) -> bool {
        let live: std::collections::HashSet<String> = self
            .manager
            .sessions
            .read()
            .await
            .keys()
            .map(|k| k.to_string())
            .collect();
        let mut by_user = self
            .by_user
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by_user.retain(|_, ids| {
            ids.retain(|id| live.contains(id));
            !ids.is_empty()
        });
        by_user.get(user).map_or(0, Vec::len) < MAX_SESSIONS_PER_USER
    }

    /// Records that `user` opened the session `id`.
    pub(crate) fn opened(&self, user: &str, id: &str) {
        self.by_user
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(user.to_string())
            .or_default()
            .push(id.to_string());
    }
}

/// One MCP session's handler.
#[derive(Clone)]
pub(crate) struct Mcp(AppState);

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(match v {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    })
}

fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "search",
            "Full-text search (BM25) over the spoke's products, substances, suppliers and documents.",
            schema(json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "Words, CAS numbers or names"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100}
                },
                "required": ["query"]
            })),
        ),
        Tool::new(
            "get_entity",
            "One product, substance or supplier with its documents and latest evaluation.",
            schema(json!({
                "type": "object",
                "properties": {"id": {"type": "string"}},
                "required": ["id"]
            })),
        ),
        Tool::new(
            "evaluate",
            "Evaluate products against the active packs; writes Compliance Locks (needs the evaluate permission).",
            schema(json!({
                "type": "object",
                "properties": {
                    "products": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "as_of": {"type": "string", "format": "date", "description": "Evaluate as things stand on this day (YYYY-MM-DD); default today."}
                },
                "required": ["products"]
            })),
        ),
        Tool::new(
            "ask",
            "A grounded answer from the spoke's documents by its local model, citing the passages it used.",
            schema(json!({
                "type": "object",
                "properties": {"question": {"type": "string"}},
                "required": ["question"]
            })),
        ),
    ]
}

/// A tool's failure, with the same kind and message as the REST API gives.
struct ToolError {
    kind: &'static str,
    message: String,
}

fn failure(kind: &'static str, message: impl std::fmt::Display) -> ToolError {
    ToolError {
        kind,
        message: message.to_string(),
    }
}

impl ToolError {
    /// The failure as the caller sees it: a result marked as an error.
    fn response(self) -> CallToolResponse {
        CallToolResult::error(vec![ContentBlock::text(
            json!({ "error": { "kind": self.kind, "message": self.message } }).to_string(),
        )])
        .into()
    }
}

fn arg<'a>(args: &'a JsonObject, name: &str) -> Result<&'a Value, ToolError> {
    args.get(name)
        .ok_or_else(|| failure("invalid", format!("argument {name:?} is missing")))
}

fn string_arg(args: &JsonObject, name: &str) -> Result<String, ToolError> {
    arg(args, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| failure("invalid", format!("argument {name:?} must be a string")))
}

impl Mcp {
    async fn run_tool(
        &self,
        actor: Actor,
        name: &str,
        args: JsonObject,
    ) -> Result<Value, ToolError> {
        let s = &self.0;
        let api = |e: crate::ApiError| failure(e.kind, e.message);
        match name {
            "search" => {
                let query = string_arg(&args, "query")?;
                let limit = args
                    .get("limit")
                    .and_then(Value::as_u64)
                    .unwrap_or(10)
                    .clamp(1, 100) as usize;
                let hits = s
                    .run(move |a| a.search(&actor, &query, &search::Filter::default(), limit))
                    .await
                    .map_err(api)?;
                Ok(json!(hits))
            }
            "get_entity" => {
                let id = string_arg(&args, "id")?;
                s.run(move |a| {
                    actor.require(Permission::Read)?;
                    let st = a.store();
                    let entity = st.entity(&id)?;
                    let documents = st.documents(Some(&id))?;
                    let latest = st.evaluations(Some(&id), 1)?.into_iter().next();
                    Ok(json!({"entity": entity, "documents": documents, "latest_evaluation": latest}))
                })
                .await
                .map_err(api)
            }
            "evaluate" => {
                let products: Vec<String> = serde_json::from_value(arg(&args, "products")?.clone())
                    .map_err(|_| {
                        failure(
                            "invalid",
                            "argument \"products\" must be a list of product ids",
                        )
                    })?;
                let as_of = args
                    .get("as_of")
                    .map(|_| string_arg(&args, "as_of"))
                    .transpose()?;
                let outcomes = s
                    .run(move |a| a.evaluate_as_of(&actor, &products, as_of.as_deref()))
                    .await
                    .map_err(api)?;
                Ok(json!(outcomes))
            }
            "ask" => {
                let question = string_arg(&args, "question")?;
                let app = Arc::clone(&s.appliance);
                let gw = Arc::clone(&s.gateway);
                let answer = tokio::task::spawn_blocking(move || {
                    gw.ask(
                        &app,
                        &actor,
                        &question,
                        &gateway::GenerateOptions::default(),
                        &mut |_| ControlFlow::Continue(()),
                    )
                })
                .await
                .map_err(|e| failure("internal", e))?
                .map_err(|e| failure(e.kind(), e))?;
                Ok(json!(answer))
            }
            other => Err(failure(
                "not_found",
                format!("no tool {other:?}; the tools are search, get_entity, evaluate and ask"),
            )),
        }
    }
}

impl ServerHandler for Mcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "eurocomply-spoke",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Tools of one compliance appliance. Data stays on the appliance; \
                 answers come from its local model and its own documents.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // The guard in front of /mcp authenticated the HTTP request and
        // left the caller in its extensions.
        let actor = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<Actor>())
            .cloned();
        let Some(actor) = actor else {
            return Ok(failure(
                "unauthenticated",
                "no authenticated caller; send a bearer token",
            )
            .response());
        };
        let args = request.arguments.unwrap_or_default();
        Ok(match self.run_tool(actor, &request.name, args).await {
            Ok(v) => CallToolResult::success(vec![ContentBlock::text(v.to_string())]).into(),
            Err(failed) => failed.response(),
        })
    }
}
