//! `/v1/users`: list, create, read, change role or status, deactivate.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use validator::Validate;

use super::{Email, User, UserId, UserStatus, store};
use crate::{
    audit::{self, AuditEvent},
    auth::{Authorized, Principal, Role, password, scope, session},
    db::{Access, TenantTx},
    http::{
        AppState,
        error::ApiError,
        etag::{Preconditions, with_etag},
        extract::{ApiPath, ApiQuery, ValidJson},
        pagination::{Page, PageParams, PageRequest},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, deactivate_user))
}

/// Users of the tenant, newest first.
#[utoipa::path(
    get, path = "/v1/users", tag = "users",
    params(PageParams),
    security(("bearer" = ["users:read"]), ("api_key" = ["users:read"])),
    responses((status = 200, description = "A page of users", body = Page<User>))
)]
pub async fn list_users(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::UsersRead>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<User>>, ApiError> {
    let page = PageRequest::try_from(params)?;
    let mut tx = state.db.tenant(&principal, Access::ReadOnly).await?;
    let rows = store::list(&mut tx, page).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(rows, page, |u| u.id.as_uuid())))
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(example = "ada@acme.test")]
    pub email: String,
    pub role: Role,
    /// 12-128 characters. Omit it to have one generated and returned once.
    #[schema(value_type = Option<String>, format = Password, example = "correct horse battery staple")]
    pub password: Option<SecretString>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    #[serde(flatten)]
    pub user: User,
    /// The generated password, present only when none was given. Shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Zb4l8Qk1v2T9xYpq3RmN0c")]
    pub password: Option<String>,
}

/// Creates a user with a role no more powerful than the caller's.
#[utoipa::path(
    post, path = "/v1/users", tag = "users",
    request_body = CreateUser,
    security(("bearer" = ["users:write"]), ("api_key" = ["users:write"])),
    responses(
        (status = 201, description = "Created", body = CreatedUser),
        (status = 409, description = "Email already used in this tenant (`email_taken`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::UsersWrite>,
    ValidJson(body): ValidJson<CreateUser>,
) -> Result<Response, ApiError> {
    let email = Email::parse(&body.email)?;
    ensure_may_grant(&principal, body.role)?;
    let (password, generated) = match body.password {
        Some(given) => {
            password::validate("password", given.expose_secret())?;
            (given, false)
        }
        None => (password::generate(), true),
    };
    let shown = generated.then(|| password.expose_secret().to_owned());
    let hash = state.auth.passwords.hash(password).await?;

    let mut tx = state.db.tenant(&principal, Access::ReadWrite).await?;
    let user = store::insert(&mut tx, principal.tenant_id(), &email, body.role, &hash).await?;
    audit::record(
        &mut tx,
        &principal,
        AuditEvent::new("user.created", "user", user.id)
            .data(serde_json::json!({"role": user.role})),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user,
            password: shown,
        }),
    )
        .into_response())
}

/// One user.
#[utoipa::path(
    get, path = "/v1/users/{id}", tag = "users",
    params(("id" = UserId, Path, description = "User id")),
    security(("bearer" = ["users:read"]), ("api_key" = ["users:read"])),
    responses(
        (status = 200, description = "The user", body = User, headers(("ETag" = String))),
        (status = 304, description = "Not modified since the `If-None-Match` version"),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::UsersRead>,
    ApiPath(id): ApiPath<UserId>,
    preconditions: Preconditions,
) -> Result<Response, ApiError> {
    let mut tx = state.db.tenant(&principal, Access::ReadOnly).await?;
    let user = store::find(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    tx.commit().await?;
    Ok(preconditions.read_response(user.version, user))
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "admin"}))]
pub struct UpdateUser {
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

/// Changes a user's role or status. Deactivation ends all their sessions at once.
#[utoipa::path(
    patch, path = "/v1/users/{id}", tag = "users",
    params(("id" = UserId, Path, description = "User id")),
    request_body = UpdateUser,
    security(("bearer" = ["users:write"]), ("api_key" = ["users:write"])),
    responses(
        (status = 200, description = "The updated user", body = User, headers(("ETag" = String))),
        (status = 409, description = "The tenant would lose its last owner (`last_owner`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` is stale", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_user(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::UsersWrite>,
    ApiPath(id): ApiPath<UserId>,
    preconditions: Preconditions,
    ValidJson(body): ValidJson<UpdateUser>,
) -> Result<Response, ApiError> {
    let mut tx = state.db.tenant(&principal, Access::ReadWrite).await?;
    let user = change_user(
        &mut tx,
        &principal,
        id,
        &preconditions,
        body.role,
        body.status,
    )
    .await?;
    tx.commit().await?;
    Ok(with_etag(user.version, user))
}

/// Deactivates a user (their sessions end; the record stays for the audit trail).
#[utoipa::path(
    delete, path = "/v1/users/{id}", tag = "users",
    params(("id" = UserId, Path, description = "User id")),
    security(("bearer" = ["users:write"]), ("api_key" = ["users:write"])),
    responses((status = 204, description = "Deactivated"))
)]
pub async fn deactivate_user(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::UsersWrite>,
    ApiPath(id): ApiPath<UserId>,
    preconditions: Preconditions,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.tenant(&principal, Access::ReadWrite).await?;
    change_user(
        &mut tx,
        &principal,
        id,
        &preconditions,
        None,
        Some(UserStatus::Deactivated),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn change_user(
    tx: &mut TenantTx,
    principal: &Principal,
    id: UserId,
    preconditions: &Preconditions,
    role: Option<Role>,
    status: Option<UserStatus>,
) -> Result<User, ApiError> {
    if principal.user_id() == Some(id) {
        return Err(ApiError::forbidden(
            "cannot_modify_self",
            "you cannot change your own role or status",
        ));
    }
    // Lock owners first, then the user, in every writer: one lock order, no deadlock.
    let owners = store::lock_active_owners(tx).await?;
    let current = store::find_for_update(tx, id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    preconditions.check_write(current.version)?;
    ensure_may_grant(principal, current.role)?;
    let role = role.unwrap_or(current.role);
    let status = status.unwrap_or(current.status);
    ensure_may_grant(principal, role)?;
    if role == current.role && status == current.status {
        return Ok(current);
    }
    let stays_owner = role == Role::Owner && status == UserStatus::Active;
    if owners.contains(&id) && !stays_owner && owners.len() == 1 {
        return Err(ApiError::conflict(
            "last_owner",
            "the tenant must keep at least one active owner",
        ));
    }
    let user = store::update(tx, id, role, status).await?;
    if status == UserStatus::Deactivated && current.status == UserStatus::Active {
        session::revoke_user_sessions(tx, id, "user_deactivated").await?;
    }
    let data = serde_json::json!({"role": user.role, "status": user.status});
    audit::record(
        tx,
        principal,
        AuditEvent::new("user.updated", "user", user.id).data(data),
    )
    .await?;
    Ok(user)
}

/// A caller may grant (or touch a holder of) a role only when they hold all its scopes.
fn ensure_may_grant(principal: &Principal, role: Role) -> Result<(), ApiError> {
    if role.scopes().is_subset_of(principal.scopes()) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "role_escalation",
            format!("the `{}` role has scopes you do not hold", role.as_str()),
        ))
    }
}
