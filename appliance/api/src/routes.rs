//! The route table: one row per endpoint with the permission it needs. The
//! authorisation layer, the OpenAPI document and the role-matrix tests all
//! read this table, so they cannot disagree.

use appliance::{Permission, Role};

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path as axum matches it (`{id}` for parameters).
    pub path: &'static str,
    /// What the caller needs; `None` is public.
    pub permission: Option<Permission>,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

const fn r(
    method: &'static str,
    path: &'static str,
    permission: Option<Permission>,
    summary: &'static str,
) -> Route {
    Route {
        method,
        path,
        permission,
        summary,
    }
}

use Permission::{Admin, ApprovePacks, Evaluate, Read, ReadAudit, Write};

/// Every endpoint the spoke serves.
pub const ROUTES: &[Route] = &[
    r("GET", "/health", None, "Liveness: the process answers"),
    r(
        "GET",
        "/health/deep",
        Some(Read),
        "Store checks: database integrity, audit chain, search index, objects",
    ),
    r(
        "GET",
        "/metrics",
        None,
        "Prometheus metrics: request counts and latencies, store counts (never content)",
    ),
    r("GET", "/api/v1/openapi.json", None, "This document"),
    r(
        "POST",
        "/api/v1/session",
        None,
        "Sign in with user name and password; returns a bearer token",
    ),
    r(
        "GET",
        "/api/v1/session",
        Some(Read),
        "Who is signed in: user, role and every endpoint that role may call",
    ),
    r(
        "DELETE",
        "/api/v1/session",
        Some(Read),
        "Sign out: revoke the token used",
    ),
    r(
        "GET",
        "/api/v1/status",
        Some(Read),
        "Version, lifecycle state, kernel build, counts",
    ),
    r(
        "GET",
        "/api/v1/lifecycle",
        Some(Read),
        "The lifecycle state",
    ),
    r(
        "PUT",
        "/api/v1/lifecycle",
        Some(Admin),
        "Change the lifecycle state (ACTIVE, SUSPENDED, LEGAL_HOLD); leaving LEGAL_HOLD answers 202 until a second administrator confirms",
    ),
    r(
        "GET",
        "/api/v1/entities",
        Some(Read),
        "List entities (kind, limit, offset)",
    ),
    r("POST", "/api/v1/entities", Some(Write), "Create an entity"),
    r(
        "GET",
        "/api/v1/entities/{id}",
        Some(Read),
        "One entity with its documents and latest evaluation",
    ),
    r(
        "PUT",
        "/api/v1/entities/{id}",
        Some(Write),
        "Replace an entity",
    ),
    r(
        "DELETE",
        "/api/v1/entities/{id}",
        Some(Write),
        "Delete an entity",
    ),
    r(
        "GET",
        "/api/v1/entities/{id}/supply-chain",
        Some(Read),
        "Everything upstream of an entity, with paths",
    ),
    r(
        "GET",
        "/api/v1/substances/{cas}/where-used",
        Some(Read),
        "Products using a substance, with paths",
    ),
    r(
        "POST",
        "/api/v1/relationships",
        Some(Write),
        "Relate two entities (contains, supplies)",
    ),
    r(
        "GET",
        "/api/v1/documents",
        Some(Read),
        "List documents (entity)",
    ),
    r(
        "POST",
        "/api/v1/documents",
        Some(Write),
        "Upload a document (raw body; kind, filename, entity, expires as query)",
    ),
    r(
        "GET",
        "/api/v1/documents/{id}",
        Some(Read),
        "Document metadata",
    ),
    r(
        "GET",
        "/api/v1/documents/{id}/content",
        Some(Read),
        "Document bytes, checked against their digest",
    ),
    r(
        "GET",
        "/api/v1/search",
        Some(Read),
        "Full-text search, BM25 (q, kind, tag, limit)",
    ),
    r(
        "POST",
        "/api/v1/evaluations",
        Some(Evaluate),
        "Evaluate products; writes evaluations and Compliance Locks",
    ),
    r(
        "GET",
        "/api/v1/evaluations",
        Some(Read),
        "Evaluation records (product, limit)",
    ),
    r(
        "GET",
        "/api/v1/locks",
        Some(Read),
        "Compliance Locks (product, limit)",
    ),
    r(
        "GET",
        "/api/v1/locks/{id}",
        Some(Read),
        "One Compliance Lock with its result",
    ),
    r(
        "POST",
        "/api/v1/locks/{id}/replay",
        Some(Read),
        "Replay a lock; reports whether the result is byte-identical",
    ),
    r(
        "GET",
        "/api/v1/packs",
        Some(Read),
        "Installed packs and which version is active",
    ),
    r(
        "GET",
        "/api/v1/changes",
        Some(Read),
        "Pack changes with their simulator diffs, newest first",
    ),
    r(
        "GET",
        "/api/v1/changes/{id}",
        Some(Read),
        "One pack change with its simulator diff",
    ),
    r(
        "POST",
        "/api/v1/changes/{id}/approve",
        Some(ApprovePacks),
        "Approve a pending change: activate its packs and re-evaluate every product",
    ),
    r(
        "POST",
        "/api/v1/changes/{id}/reject",
        Some(ApprovePacks),
        "Reject a pending change",
    ),
    r(
        "POST",
        "/api/v1/changes/{id}/rollback",
        Some(ApprovePacks),
        "Propose undoing an applied change (simulated; approve it to apply)",
    ),
    r(
        "GET",
        "/api/v1/audit",
        Some(ReadAudit),
        "Audit log entries (after, limit)",
    ),
    r(
        "GET",
        "/api/v1/audit/verify",
        Some(ReadAudit),
        "Verify the audit hash chain",
    ),
    r("GET", "/api/v1/users", Some(Admin), "List users"),
    r("POST", "/api/v1/users", Some(Admin), "Create a user"),
    r(
        "GET",
        "/api/v1/tokens",
        Some(Admin),
        "List tokens (never secrets)",
    ),
    r(
        "POST",
        "/api/v1/tokens",
        Some(Admin),
        "Issue an API token for a user",
    ),
    r(
        "DELETE",
        "/api/v1/tokens/{id}",
        Some(Admin),
        "Revoke a token",
    ),
    r(
        "POST",
        "/api/v1/support-access",
        Some(Admin),
        "Grant time-limited read-only support access",
    ),
    r(
        "GET",
        "/api/v1/media",
        Some(Admin),
        "Media in the media directory (`spoke serve --media DIR`)",
    ),
    r(
        "GET",
        "/api/v1/media/progress",
        Some(Admin),
        "Progress of the running (or last) media install",
    ),
    r(
        "POST",
        "/api/v1/media/{id}/preview",
        Some(Admin),
        "Verify a medium's signatures and list what it holds; installs nothing",
    ),
    r(
        "POST",
        "/api/v1/media/{id}/install",
        Some(Admin),
        "Verify and install a medium; returns what was installed and the pack change proposed",
    ),
    r(
        "GET",
        "/api/v1/backups",
        Some(Admin),
        "Backups in the backup directory (`spoke serve --backup-to DIR`)",
    ),
    r(
        "POST",
        "/api/v1/backups",
        Some(Admin),
        "Take a backup now (the schedule's recipients and retention)",
    ),
    r(
        "GET",
        "/api/v1/os",
        Some(Read),
        "The running OS version and both A/B boot slots (on the appliance image)",
    ),
    r(
        "GET",
        "/api/v1/ai/status",
        Some(Read),
        "Tier A: active models (with digests), passage vectors, today's AI requests and the plan's limit",
    ),
    r(
        "POST",
        "/api/v1/ai/embed",
        Some(Read),
        "Sentence vectors for up to 256 texts from the active embedding model",
    ),
    r(
        "POST",
        "/api/v1/ai/chat",
        Some(Read),
        "Chat with the local model, streamed as server-sent events (token, then done or error)",
    ),
    r(
        "POST",
        "/api/v1/ai/ask",
        Some(Read),
        "A grounded answer from the spoke's documents, citing the passages it used",
    ),
    r(
        "GET",
        "/api/v1/models",
        Some(Read),
        "Installed model bundles and which is active per task",
    ),
    r(
        "PUT",
        "/api/v1/models/active",
        Some(Admin),
        "Make an installed model the active one for its task (atomic switch)",
    ),
    r(
        "POST",
        "/mcp",
        Some(Read),
        "MCP (streamable HTTP): tools search, get_entity, evaluate, ask; each checks the caller's role",
    ),
    r("GET", "/mcp", Some(Read), "MCP server-sent event stream"),
    r("DELETE", "/mcp", Some(Read), "End an MCP session"),
];

/// Finds the route for a matched path and method.
pub fn find(method: &str, path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.method == method && r.path == path)
}

/// Every endpoint `role` may call, as `METHOD path` (the console shows
/// only what these allow; the guard still checks each request).
pub fn allowed(role: Role) -> Vec<String> {
    ROUTES
        .iter()
        .filter(|r| r.permission.is_none_or(|p| role.allows(p)))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The OpenAPI 3.1 document, generated from [`ROUTES`].
pub fn openapi() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| serde_json::json!({}));
        let params: Vec<serde_json::Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| serde_json::json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = serde_json::json!({
            "summary": route.summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "429": {"$ref": "#/components/responses/Error"}
            }
        });
        match route.permission {
            Some(p) => {
                op["security"] = serde_json::json!([{"bearer": []}]);
                op["x-permission"] = serde_json::json!(p);
            }
            None => op["security"] = serde_json::json!([]),
        }
        entry[route.method.to_ascii_lowercase()] = op;
    }
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "EuroComply spoke API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {
                "description": "An error: what failed and what to do",
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"error": {"type": "object", "properties": {
                        "kind": {"type": "string"}, "message": {"type": "string"}}}}
                }}}
            }}
        }
    })
}
