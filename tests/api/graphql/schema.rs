//! The GraphQL schema's SDL is committed, and up to date with the code.

const COMMITTED: &str = include_str!("../../../openapi/schema.graphql");

#[test]
fn the_committed_sdl_matches_the_code() {
    assert!(
        tenantry::graphql::sdl().trim() == COMMITTED.trim(),
        "openapi/schema.graphql is stale: run `cargo run -- graphql-schema > openapi/schema.graphql`"
    );
}
