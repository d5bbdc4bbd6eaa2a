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

use crate::{
    access::{Role, scope},
    error::Error,
    http::{
        AppState,
        auth::Authorized,
        etag::{Preconditions, with_etag},
        extract::{ApiPath, ApiQuery, ValidJson},
        pagination::PageParams,
        problem::Problem,
    },
    page::{Page, PageRequest},
    users::{self, Email, NewUser, User, UserChanges, UserId, UserStatus, password::NewPassword},
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
) -> Result<Json<Page<User>>, Error> {
    let page = PageRequest::try_from(params)?;
    let users = state
        .db
        .read(&principal, async |tx| {
            users::list(tx, &principal, page).await
        })
        .await?;
    Ok(Json(users))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Unique within the tenant; stored trimmed and in lower case.
    #[schema(value_type = Email)]
    pub email: String,
    pub role: Role,
    /// Omit it to have one generated and returned once.
    #[schema(value_type = Option<NewPassword>)]
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
        (status = 409, description = "Email already used in this tenant (`email_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many password hashes in progress (`password_hashing_busy`); retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::UsersWrite>,
    ValidJson(body): ValidJson<CreateUser>,
) -> Result<Response, Error> {
    let new = NewUser::parse(
        &state.auth.passwords,
        &body.email,
        "email",
        body.role,
        body.password,
        "password",
    )
    .await?;
    let created = state
        .db
        .write(&principal, async |tx| {
            users::create(tx, &principal, new).await
        })
        .await?;
    let body = CreatedUser {
        user: created.user,
        password: created
            .generated_password
            .map(|password| password.expose_secret().to_owned()),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
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
) -> Result<Response, Error> {
    let user = state
        .db
        .read(&principal, async |tx| users::get(tx, &principal, id).await)
        .await?;
    Ok(preconditions.read_response(user.version, user))
}

#[derive(Deserialize, ToSchema)]
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
        (status = 409, description = "The tenant would lose its last owner (`last_owner`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` is stale, or weak (`W/\"…\"`: it compares strongly)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_user(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::UsersWrite>,
    ApiPath(id): ApiPath<UserId>,
    preconditions: Preconditions,
    ValidJson(body): ValidJson<UpdateUser>,
) -> Result<Response, Error> {
    let changes = UserChanges {
        role: body.role,
        status: body.status,
    };
    let user = state
        .db
        .write(&principal, async |tx| {
            users::update(tx, &principal, id, &preconditions.expected(), changes).await
        })
        .await?;
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
) -> Result<StatusCode, Error> {
    state
        .db
        .write(&principal, async |tx| {
            users::deactivate(tx, &principal, id, &preconditions.expected()).await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
