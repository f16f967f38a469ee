//! Tenants, API keys and usage: the admin API (`admin` scope), and
//! `GET /v1/usage` for a tenant's own keys. Handlers call `crates/tenancy`'s
//! `Admin`, as the CLI does through these routes.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_api::ErrorKind;
use switchyard_tenancy::{usage_csv, AdminError, GroupBy, NewKey, NewTenant, UsageQuery};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::OpenAiJson;
use crate::state::AppState;

fn admin_error(e: AdminError) -> ApiError {
    match e {
        AdminError::InvalidInput { field, reason } => ApiError::invalid(field, reason),
        e @ AdminError::NotFound { .. } => ApiError::new(ErrorKind::NotFound, format!("{e}.")).code("not_found"),
        e @ AdminError::Conflict { .. } => ApiError::new(ErrorKind::Conflict, format!("{e}.")).code("conflict"),
        AdminError::Store(e) => ApiError::overloaded(format!("The store is unavailable: {e}"), 1),
    }
}

/// `POST /admin/tenants`
pub async fn create_tenant(
    State(state): State<AppState>,
    OpenAiJson(new): OpenAiJson<NewTenant>,
) -> Result<Response, ApiError> {
    let t = state.tenancy.admin.create_tenant(&new).await.map_err(admin_error)?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

/// `GET /admin/tenants`
pub async fn tenants(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let list = state.tenancy.admin.tenants().await.map_err(admin_error)?;
    Ok(Json(json!({"object": "list", "data": list})))
}

/// `POST /admin/keys`: the key itself is in this answer only.
pub async fn create_key(
    State(state): State<AppState>,
    OpenAiJson(new): OpenAiJson<NewKey>,
) -> Result<Response, ApiError> {
    let created = state.tenancy.admin.create_key(&new).await.map_err(admin_error)?;
    let mut body = serde_json::to_value(&created.info).map_err(|e| ApiError::internal(e.to_string()))?;
    body["key"] = json!(created.secret.expose());
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
pub struct KeysQuery {
    tenant: Option<String>,
}

/// `GET /admin/keys[?tenant=]`: never the keys themselves.
pub async fn keys(State(state): State<AppState>, Query(q): Query<KeysQuery>) -> Result<Json<Value>, ApiError> {
    let list = state
        .tenancy
        .admin
        .keys(q.tenant.as_deref())
        .await
        .map_err(admin_error)?;
    Ok(Json(json!({"object": "list", "data": list})))
}

/// `POST /admin/keys/{id}/revoke`: refused from now on (on this replica at
/// once, on others within `tenancy.key_cache_secs`).
pub async fn revoke_key(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    state.tenancy.admin.revoke_key(&id).await.map_err(admin_error)?;
    state.tenancy.auth.forget(&id);
    Ok(Json(json!({"id": id, "revoked": true})))
}

#[derive(Deserialize)]
pub struct UsageParams {
    tenant: Option<String>,
    /// Unix seconds; default: the last 30 days.
    from: Option<i64>,
    to: Option<i64>,
    #[serde(default = "by_model")]
    group_by: GroupBy,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

fn by_model() -> GroupBy {
    GroupBy::Model
}

/// `GET /admin/usage` (any tenant) and `GET /v1/usage` (the caller's own).
pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UsageParams>,
) -> Result<Response, ApiError> {
    let p = &caller.principal;
    let tenant = if p.can(switchyard_tenancy::Scope::Admin) {
        q.tenant.clone()
    } else {
        let own = p.tenant_id.clone();
        if let Some(asked) = &q.tenant {
            p.may_read_tenant(asked).map_err(|_| {
                ApiError::new(
                    ErrorKind::PermissionDenied,
                    "This key may read only its own tenant's usage.",
                )
                .code("other_tenant")
            })?;
        }
        Some(own)
    };
    let now = switchyard_db::now_unix();
    let query = UsageQuery {
        tenant,
        from: q.from.unwrap_or(now - 30 * 86_400),
        to: q.to.unwrap_or(now + 1),
        group_by: q.group_by,
    };
    let groups = state.tenancy.admin.usage(&query).await.map_err(admin_error)?;
    if q.format.as_deref() == Some("csv") {
        let csv = usage_csv(query.group_by, &groups);
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response());
    }
    Ok(Json(json!({"object": "list", "data": groups})).into_response())
}
