//! Endpoint handlers: parse, call the appliance, answer JSON. Request bodies
//! are parsed strictly (unknown fields refused) and every rejection becomes a
//! JSON error that names the problem.

use crate::{routes, ApiError, AppState};
use appliance::documents::DocumentInput;
use appliance::entities::{EntityInput, EntityKind, Relationship};
use appliance::{Actor, Lifecycle, Role};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// JSON bodies are small; uploads have their own cap.
const MAX_JSON: usize = 1024 * 1024;

pub(crate) type Res = Result<Response, ApiError>;

pub(crate) fn ok(v: impl serde::Serialize) -> Res {
    Ok(Json(v).into_response())
}

fn created(v: impl serde::Serialize) -> Res {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// A JSON body whose rejections are JSON errors.
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    let status = e.status();
    let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        "unsupported_media"
    } else {
        "invalid"
    };
    ApiError::new(
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        },
        kind,
        format!(
            "{}; see /api/v1/openapi.json for the expected body",
            e.body_text()
        ),
    )
}

fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", e.body_text())
}

pub(crate) fn routes(max_upload: u64) -> Router<AppState> {
    let upload_limit = usize::try_from(max_upload)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let router = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/health/deep", get(deep_health))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(routes::openapi()) }),
        )
        .route("/api/v1/session", get(session).post(login).delete(logout))
        .route("/api/v1/status", get(status))
        .route("/api/v1/lifecycle", get(lifecycle).put(set_lifecycle))
        .route("/api/v1/entities", get(list_entities).post(create_entity))
        .route(
            "/api/v1/entities/{id}",
            get(show_entity).put(replace_entity).delete(delete_entity),
        )
        .route("/api/v1/entities/{id}/supply-chain", get(supply_chain))
        .route("/api/v1/substances/{cas}/where-used", get(where_used))
        .route("/api/v1/relationships", post(relate))
        .route(
            "/api/v1/documents",
            get(list_documents)
                .post(upload)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/api/v1/documents/{id}", get(show_document))
        .route("/api/v1/documents/{id}/content", get(document_content))
        .route("/api/v1/search", get(search))
        .route("/api/v1/evaluations", get(list_evaluations).post(evaluate))
        .route("/api/v1/locks", get(list_locks))
        .route("/api/v1/locks/{id}", get(show_lock))
        .route("/api/v1/locks/{id}/replay", post(replay))
        .route("/api/v1/packs", get(packs))
        .route("/api/v1/changes", get(changes))
        .route("/api/v1/changes/{id}", get(show_change))
        .route("/api/v1/changes/{id}/approve", post(approve_change))
        .route("/api/v1/changes/{id}/reject", post(reject_change))
        .route("/api/v1/changes/{id}/rollback", post(rollback_change))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route("/api/v1/users", get(users).post(create_user))
        .route("/api/v1/tokens", get(tokens).post(create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/api/v1/support-access", post(grant_support))
        .merge(crate::ai::routes())
        .merge(crate::media::routes())
        .merge(crate::backups::routes())
        .merge(crate::os::routes());
    router.layer(DefaultBodyLimit::max(MAX_JSON))
}

async fn deep_health(State(s): State<AppState>) -> Res {
    let h = s.run(|a| Ok(a.deep_health())).await?;
    let status = if h.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(h)).into_response())
}

async fn metrics(State(s): State<AppState>) -> Res {
    let gauges = s.run(|a| a.counts()).await?;
    let text = s.metrics.render(&gauges);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    user: String,
    password: String,
}

async fn login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(body): Body<Login>,
) -> Res {
    let origin = peer.ip().to_string();
    created(
        s.run(move |a| a.store_mut().login(&body.user, &body.password, &origin))
            .await?,
    )
}

async fn session(Extension(actor): Extension<Actor>) -> Res {
    ok(json!({
        "user": actor.name,
        "role": actor.role,
        "allowed": routes::allowed(actor.role),
    }))
}

async fn logout(State(s): State<AppState>, Extension(actor): Extension<Actor>) -> Res {
    let Some(token) = actor.token.clone() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "not signed in with a token",
        ));
    };
    s.run(move |a| a.store_mut().revoke_token(&actor, &token))
        .await?;
    ok(json!({"signed_out": true}))
}

async fn status(State(s): State<AppState>) -> Res {
    ok(s.run(|a| a.status()).await?)
}

async fn lifecycle(State(s): State<AppState>) -> Res {
    ok(s.run(|a| a.lifecycle_view()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLifecycle {
    state: Lifecycle,
    #[serde(default)]
    reason: String,
}

async fn set_lifecycle(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<SetLifecycle>,
) -> Res {
    let (change, view) = s
        .run(move |a| {
            let change = a.set_lifecycle(&actor, body.state, &body.reason)?;
            Ok((change, a.lifecycle_view()?))
        })
        .await?;
    let mut body = serde_json::to_value(&view).unwrap_or_default();
    // A release waits for a second administrator: accepted, not done.
    let status = match change {
        appliance::LifecycleChange::Changed { .. } => StatusCode::OK,
        appliance::LifecycleChange::ReleaseRequested { .. } => StatusCode::ACCEPTED,
    };
    body["result"] = serde_json::to_value(&change).unwrap_or_default()["result"].take();
    Ok((status, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    kind: Option<EntityKind>,
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    offset: usize,
}

fn default_limit() -> usize {
    100
}

async fn list_entities(State(s): State<AppState>, q: Result<Query<Page>, QueryRejection>) -> Res {
    let Query(q) = q.map_err(query_rejection)?;
    ok(
        s.run(move |a| a.store().entities(q.kind, q.limit.min(1000), q.offset))
            .await?,
    )
}

async fn create_entity(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<EntityInput>,
) -> Res {
    created(s.run(move |a| a.put_entity(&actor, body, None)).await?)
}

async fn replace_entity(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    Body(body): Body<EntityInput>,
) -> Res {
    ok(s.run(move |a| a.put_entity(&actor, body, Some(&id)))
        .await?)
}

async fn show_entity(State(s): State<AppState>, Path(id): Path<String>) -> Res {
    ok(s.run(move |a| {
        let st = a.store();
        let entity = st.entity(&id)?;
        let documents = st.documents(Some(&id))?;
        let latest = st.evaluations(Some(&id), 1)?.into_iter().next();
        Ok(json!({"entity": entity, "documents": documents, "latest_evaluation": latest}))
    })
    .await?)
}

async fn delete_entity(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Res {
    s.run(move |a| a.delete_entity(&actor, &id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn supply_chain(State(s): State<AppState>, Path(id): Path<String>) -> Res {
    ok(s.run(move |a| a.store().supply_chain(&id)).await?)
}

async fn where_used(State(s): State<AppState>, Path(cas): Path<String>) -> Res {
    ok(s.run(move |a| a.store().where_used(&cas)).await?)
}

async fn relate(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<Relationship>,
) -> Res {
    let echo = body.clone();
    s.run(move |a| a.relate(&actor, &body)).await?;
    created(echo)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocFilter {
    entity: Option<String>,
}

async fn list_documents(
    State(s): State<AppState>,
    q: Result<Query<DocFilter>, QueryRejection>,
) -> Res {
    let Query(q) = q.map_err(query_rejection)?;
    ok(s.run(move |a| a.store().documents(q.entity.as_deref()))
        .await?)
}

async fn upload(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    q: Result<Query<DocumentInput>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Res {
    let Query(input) = q.map_err(query_rejection)?;
    let bytes = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "too_large",
                "the upload exceeds the spoke's size limit; split or compress the file",
            )
        } else {
            ApiError::new(status, "invalid", e.body_text())
        }
    })?;
    // Checked under the store's lock, read without it (a PDF's text comes
    // from a limited child process that may take seconds), stored under it.
    let (who, body) = (actor.clone(), bytes.clone());
    let prepared = s
        .run(move |a| a.prepare_document(&who, input, &body))
        .await?;
    let body = bytes.clone();
    let extracted =
        crate::off_thread(move || prepared.extract(&body).map_err(ApiError::from)).await?;
    created(
        s.run(move |a| a.store_document(&actor, extracted, &bytes))
            .await?,
    )
}

async fn show_document(State(s): State<AppState>, Path(id): Path<String>) -> Res {
    ok(s.run(move |a| a.store().document(&id)).await?)
}

async fn document_content(State(s): State<AppState>, Path(id): Path<String>) -> Res {
    let (doc, bytes) = s.run(move |a| a.document_content(&id)).await?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        doc.filename.replace(['"', '\\'], "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, doc.media_type),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    q: String,
    kind: Option<String>,
    tag: Option<String>,
    #[serde(default = "default_hits")]
    limit: usize,
}

fn default_hits() -> usize {
    10
}

async fn search(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Res {
    let Query(q) = q.map_err(query_rejection)?;
    let filter = search::Filter {
        kind: q.kind,
        tags: q.tag.into_iter().collect(),
    };
    ok(s.run(move |a| a.search(&actor, &q.q, &filter, q.limit))
        .await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Evaluate {
    #[serde(default)]
    products: Vec<String>,
    #[serde(default)]
    all: bool,
    /// `YYYY-MM-DD`: evaluate as things stand on that day (default today).
    #[serde(default)]
    as_of: Option<String>,
}

async fn evaluate(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<Evaluate>,
) -> Res {
    if body.all != body.products.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "give either \"products\": [ids] or \"all\": true",
        ));
    }
    let outcomes = s
        .run(move |a| {
            let ids = if body.all {
                a.product_ids()?
            } else {
                body.products
            };
            a.evaluate_as_of(&actor, &ids, body.as_of.as_deref())
        })
        .await?;
    created(outcomes)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByProduct {
    product: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

async fn list_evaluations(
    State(s): State<AppState>,
    q: Result<Query<ByProduct>, QueryRejection>,
) -> Res {
    let Query(q) = q.map_err(query_rejection)?;
    ok(s.run(move |a| {
        a.store()
            .evaluations(q.product.as_deref(), q.limit.min(1000))
    })
    .await?)
}

async fn list_locks(State(s): State<AppState>, q: Result<Query<ByProduct>, QueryRejection>) -> Res {
    let Query(q) = q.map_err(query_rejection)?;
    ok(
        s.run(move |a| a.store().locks(q.product.as_deref(), q.limit.min(1000)))
            .await?,
    )
}

async fn show_lock(State(s): State<AppState>, Path(id): Path<String>) -> Res {
    ok(s.run(move |a| a.store().lock(&id)).await?)
}

async fn replay(State(s): State<AppState>, Path(id): Path<String>) -> Res {
    let r = s.run(move |a| a.replay(&id)).await?;
    let result: Value = serde_json::from_slice(&r.bytes).unwrap_or(Value::Null);
    ok(json!({"replay": r, "result": result}))
}

async fn packs(State(s): State<AppState>) -> Res {
    ok(s.run(|a| {
        let active: Vec<String> = a
            .store()
            .active_packs()?
            .into_iter()
            .map(|b| b.cid)
            .collect();
        Ok(a.store()
            .bundles(Some("pack"))?
            .into_iter()
            .map(|b| {
                let is_active = active.contains(&b.cid);
                json!({"name": b.name, "version": b.version, "cid": b.cid, "active": is_active,
                       "installed_at": b.installed_at, "manifest": b.manifest})
            })
            .collect::<Vec<_>>())
    })
    .await?)
}

async fn changes(State(s): State<AppState>) -> Res {
    ok(s.run(|a| a.store().changes()).await?)
}

async fn show_change(State(s): State<AppState>, Path(id): Path<String>) -> Res {
    ok(s.run(move |a| a.store().change(&id)).await?)
}

async fn approve_change(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Res {
    ok(s.run(move |a| a.decide(&actor, &id, true)).await?)
}

async fn reject_change(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Res {
    ok(s.run(move |a| a.decide(&actor, &id, false)).await?)
}

async fn rollback_change(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Res {
    created(s.run(move |a| a.rollback(&actor, &id)).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditPage {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: usize,
}

async fn audit(State(s): State<AppState>, q: Result<Query<AuditPage>, QueryRejection>) -> Res {
    let Query(q) = q.map_err(query_rejection)?;
    ok(
        s.run(move |a| a.store().audit_page(q.after, q.limit.min(1000)))
            .await?,
    )
}

async fn audit_verify(State(s): State<AppState>) -> Res {
    ok(s.run(|a| a.store().audit_verify()).await?)
}

async fn users(State(s): State<AppState>) -> Res {
    ok(s.run(|a| a.store().users()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    role: Role,
    password: String,
}

async fn create_user(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<NewUser>,
) -> Res {
    created(
        s.run(move |a| {
            a.store_mut()
                .create_user(&actor, &body.name, body.role, &body.password)
        })
        .await?,
    )
}

async fn tokens(State(s): State<AppState>) -> Res {
    ok(s.run(|a| a.store().tokens()).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    user: String,
    label: String,
    hours: Option<i64>,
}

async fn create_token(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<NewToken>,
) -> Res {
    created(
        s.run(move |a| {
            a.store_mut()
                .create_token(&actor, &body.user, &body.label, body.hours)
        })
        .await?,
    )
}

async fn revoke_token(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Res {
    s.run(move |a| a.store_mut().revoke_token(&actor, &id))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Support {
    grantee: String,
    hours: i64,
}

async fn grant_support(
    State(s): State<AppState>,
    Extension(actor): Extension<Actor>,
    Body(body): Body<Support>,
) -> Res {
    created(
        s.run(move |a| {
            a.store_mut()
                .grant_support(&actor, &body.grantee, body.hours)
        })
        .await?,
    )
}
