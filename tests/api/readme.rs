//! The README's tour works verbatim: its shell blocks run, in order, against a real server
//! on an empty database of their own, and no step is answered with a problem.

use serde_json::Value;

use crate::helpers::{ScratchDatabase, spawn_app_with};

const README: &str = include_str!("../../README.md");

/// The first ```sh block after `heading`.
fn shell_block(heading: &str) -> &'static str {
    let section = README
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the README has a section {heading:?}"))
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the section has a shell block")
        .1;
    block.split_once("```").expect("the block ends").0
}

#[tokio::test]
async fn the_readme_tour_runs_verbatim_and_no_step_is_refused() {
    // Arrange: the tour's own operator token, on an empty database (it creates `acme`).
    let database = ScratchDatabase::new("readme");
    let app = spawn_app_with(&[
        ("DATABASE_URL", &database.url()),
        ("TENANTRY_OPERATOR_TOKEN", "dev-operator-token"),
    ])
    .await;
    let tour = shell_block("## A short tour");
    let orders = shell_block("## Catalog and orders");
    assert!(
        tour.contains("B=http://127.0.0.1:8080\n"),
        "the tour names the default address"
    );
    // Only the address changes: the server under test listens on a port of its own.
    let script = format!("{tour}\n{orders}")
        .replace("B=http://127.0.0.1:8080\n", &format!("B={}\n", app.address));

    // Act
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .await
        .expect("bash runs");

    // Assert: every step answered, none with a problem, and the tour ends where it says.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the tour ran to the end; stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert!(
        !stdout.contains("urn:tenantry:problem"),
        "no step of the tour is refused:\n{stdout}"
    );
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("every answer is JSON ({e}):\n{stdout}"));
    assert_eq!(answers.len(), 7, "one answer per printing step:\n{stdout}");
    assert_eq!(answers[0]["tenant"]["slug"], "acme", "{}", answers[0]);
    assert_eq!(answers[1]["actor_type"], "api_key", "{}", answers[1]);
    assert_eq!(
        answers[3]["status"], "confirmed",
        "confirm without a body: {}",
        answers[3]
    );
    assert_eq!(
        answers[5]["status"], "pending",
        "as of version 1: {}",
        answers[5]
    );
    let listed = answers[6]["items"].as_array().expect("a page of orders");
    assert_eq!(listed.len(), 1, "{}", answers[6]);
    assert_eq!(
        listed[0]["customer"]["name"], "Ada",
        "expanded: {}",
        answers[6]
    );
}
