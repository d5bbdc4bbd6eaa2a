//! Owners and self-modification: a tenant always keeps an active owner, and nobody changes
//! their own role or status.

use reqwest::StatusCode;
use serde_json::json;
use tenantry::access::Scope;

use super::user;
use crate::helpers::{expect_json, expect_problem, snapshot, spawn_app};

#[tokio::test]
async fn the_last_active_owner_cannot_be_demoted_or_deactivated() {
    // Arrange: an all-scope credential that is not the owner (self-changes are refused
    // earlier, for a different reason)
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let everything: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let (_, all_scope_key) = app.create_api_key(&tenant, &everything).await;
    let owner_path = format!("/v1/users/{}", tenant.owner_id);
    let before = snapshot(&app, tenant.id).await;

    let attempts = [
        (
            "demote to admin",
            app.patch(&owner_path, &all_scope_key, json!({"role": "admin"}))
                .await,
        ),
        (
            "deactivate by PATCH",
            app.patch(
                &owner_path,
                &all_scope_key,
                json!({"status": "deactivated"}),
            )
            .await,
        ),
        (
            "deactivate by DELETE",
            app.delete(&owner_path, &all_scope_key).await,
        ),
    ];

    for (name, response) in attempts {
        // Assert
        let problem = expect_problem(response, StatusCode::CONFLICT, "last_owner").await;
        assert!(
            problem["detail"].is_string(),
            "{name} the last owner: {problem}"
        );
    }
    assert_eq!(
        snapshot(&app, tenant.id).await,
        before,
        "the tenant is unchanged"
    );
    assert_eq!(
        app.get("/v1/me", &tenant.token).await.status(),
        StatusCode::OK,
        "the owner's session is intact"
    );
}

#[tokio::test]
async fn an_owner_can_demote_another_owner_while_one_remains() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (second_owner_id, second_owner_token) = app.create_user(&tenant, "owner").await;
    let everything: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    // The second owner's key: it holds every scope for as long as its creator does (a key
    // of the first owner would shrink to an admin's scopes when they are demoted below).
    let all_scope_key = expect_json(
        app.post(
            "/v1/api-keys",
            &second_owner_token,
            json!({"name": "all scopes", "scopes": everything}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // Act: the second owner demotes the first
    let demoted = expect_json(
        app.patch(
            &format!("/v1/users/{}", tenant.owner_id),
            &second_owner_token,
            json!({"role": "admin"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // Assert
    assert_eq!(
        demoted["role"], "admin",
        "an owner may demote another owner: {demoted}"
    );
    let second_path = format!("/v1/users/{second_owner_id}");
    expect_problem(
        app.patch(&second_path, &tenant.token, json!({"role": "admin"}))
            .await,
        StatusCode::FORBIDDEN,
        "role_escalation",
    )
    .await;
    expect_problem(
        app.patch(&second_path, &all_scope_key, json!({"role": "admin"}))
            .await,
        StatusCode::CONFLICT,
        "last_owner",
    )
    .await;
    expect_problem(
        app.delete(&second_path, &all_scope_key).await,
        StatusCode::CONFLICT,
        "last_owner",
    )
    .await;
    let remaining = user(&app, &tenant, &second_owner_id).await;
    assert_eq!(
        (remaining["role"].as_str(), remaining["status"].as_str()),
        (Some("owner"), Some("active")),
        "the one remaining owner stays an active owner: {remaining}"
    );
}

#[tokio::test]
async fn a_deactivated_owner_does_not_count_as_the_remaining_owner() {
    // Arrange: two owners, one of them deactivated
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (second_owner_id, _) = app.create_user(&tenant, "owner").await;
    let deactivated = app
        .delete(&format!("/v1/users/{second_owner_id}"), &tenant.token)
        .await;
    assert_eq!(
        deactivated.status(),
        StatusCode::NO_CONTENT,
        "the second owner is deactivated"
    );
    let everything: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let (_, all_scope_key) = app.create_api_key(&tenant, &everything).await;

    // Act
    let response = app
        .patch(
            &format!("/v1/users/{}", tenant.owner_id),
            &all_scope_key,
            json!({"role": "admin"}),
        )
        .await;

    // Assert
    expect_problem(response, StatusCode::CONFLICT, "last_owner").await;
}

#[tokio::test]
async fn nobody_can_change_their_own_role_or_status() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (admin_id, admin_token) = app.create_user(&tenant, "admin").await;
    // A second owner, so "last owner" is not what stops the owner below.
    app.create_user(&tenant, "owner").await;
    let callers = [
        ("owner", tenant.owner_id.clone(), tenant.token.clone()),
        ("admin", admin_id, admin_token),
    ];

    for (who, id, token) in &callers {
        let path = format!("/v1/users/{id}");
        let before = user(&app, &tenant, id).await;
        let attempts = [
            (
                "change their role to viewer",
                app.patch(&path, token, json!({"role": "viewer"})).await,
            ),
            (
                "deactivate themselves by PATCH",
                app.patch(&path, token, json!({"status": "deactivated"}))
                    .await,
            ),
            (
                "deactivate themselves by DELETE",
                app.delete(&path, token).await,
            ),
        ];

        for (name, response) in attempts {
            // Assert
            let problem =
                expect_problem(response, StatusCode::FORBIDDEN, "cannot_modify_self").await;
            assert!(
                problem["detail"].is_string(),
                "the {who} trying to {name}: {problem}"
            );
        }
        let after = user(&app, &tenant, id).await;
        assert_eq!(after, before, "the {who} is unchanged");
        assert_eq!(
            app.get("/v1/me", token).await.status(),
            StatusCode::OK,
            "the {who}'s session is intact"
        );
    }
}
