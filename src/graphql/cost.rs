//! What a GraphQL operation may cost, decided once it is parsed and before it runs — so an
//! operation too deep, too large or over its budget never touches the database.
//!
//! - **Depth**: at most [`Settings::max_depth`] levels of fields (`query_too_deep`).
//! - **Complexity**: every selected field counts 1; a connection (`query::CONNECTIONS`)
//!   counts its selection `first` times (50 when `first` is not given); a mutation
//!   [`MUTATION_COMPLEXITY`] more; aliases and fragments count every time they select. At
//!   most [`Settings::max_complexity`] (`query_too_complex`).
//! - **Budget**: an operation costs `ceil(complexity / 100)` points (at least 1): a REST
//!   request's worth per hundred objects, and per mutation. Each credential may spend a
//!   minute of its plan's request rate in points — `requests_per_second × 60` per minute,
//!   refilling continuously — through the same rate limiter as REST requests (Redis when
//!   configured, so every instance counts against one budget). Past it the operation is
//!   refused with `rate_limited` and `retry_after_seconds`; an operation costing more than
//!   the whole budget is `query_too_costly`. Every operation of a batch is charged.
//!
//! Every answer says what its operation cost, under `extensions.cost`, as GitHub's
//! GraphQL API does: `{"complexity": 251, "points": 3, "budget": 600, "remaining": 597,
//! "resetSeconds": 1}` (`budget` and `remaining` are absent when the plan sets no rate).
//!
//! The measure is taken here, from the parsed document, rather than by an `async-graphql`
//! extension: any extension sends every field of every answer through the library's slow
//! path (a hook and a path per field), which cost more than the query itself.

use std::sync::Arc;

use async_graphql::{
    Executor, Request, Response, ServerError, Value, Variables,
    parser::types::{
        DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType,
        Selection, SelectionSet,
    },
};

use super::{error::to_server_error, query::CONNECTIONS};
use crate::{
    error::{Error, whole_seconds},
    traffic::{Limit, Limiter},
};

pub use crate::config::GraphqlSettings as Settings;

/// Complexity per budget point.
pub const COMPLEXITY_PER_POINT: usize = 100;

/// What a mutation field costs by itself (a read field costs 1): the cost of a REST
/// request, in points of the budget.
pub const MUTATION_COMPLEXITY: usize = 100;

/// Items a connection counts when `first` is not given: its default page.
const DEFAULT_FIRST: usize = crate::page::DEFAULT_LIMIT as usize;

/// The points an operation of `complexity` costs.
pub fn points(complexity: usize) -> u32 {
    u32::try_from(complexity.div_ceil(COMPLEXITY_PER_POINT).max(1)).unwrap_or(u32::MAX)
}

/// The request's budget: where it is counted, and the caller's limit (cost left at 1,
/// set per operation). `None` when the plan sets no rate or rate limits are off.
pub struct Budget {
    pub limiter: Arc<Limiter>,
    pub limit: Option<Limit>,
}

/// An operation's measure: how deep it nests and how much it may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Measure {
    pub depth: usize,
    pub complexity: usize,
}

/// One operation's cost, as reported.
pub struct Charged {
    complexity: usize,
    points: u32,
    budget: Option<u32>,
    remaining: Option<u32>,
    reset_seconds: u64,
}

impl Charged {
    /// The cost as `extensions.cost` shows it.
    pub fn value(&self) -> Value {
        let mut cost = serde_json::json!({"complexity": self.complexity, "points": self.points});
        if let (Some(budget), Some(remaining)) = (self.budget, self.remaining) {
            cost["budget"] = budget.into();
            cost["remaining"] = remaining.into();
            cost["resetSeconds"] = self.reset_seconds.into();
        }
        Value::from_json(cost).unwrap_or(Value::Null)
    }
}

/// Runs one operation on `schema` if its limits and its budget admit it: the answer, with
/// its cost under `extensions.cost`.
pub async fn run(
    schema: &impl Executor,
    settings: &Settings,
    budget: &Budget,
    mut request: Request,
) -> Response {
    let (charged, admitted) = admit(settings, budget, &mut request).await;
    let mut response = match admitted {
        Ok(()) => schema.execute(request).await,
        Err(refusal) => Response::from_errors(vec![refusal]),
    };
    if let Some(charged) = charged {
        response
            .extensions
            .insert("cost".to_owned(), charged.value());
    }
    response
}

/// Parses the operation (the document is kept for execution), holds it to the limits and
/// charges its points: what it was charged, and whether it may run.
pub async fn admit(
    settings: &Settings,
    budget: &Budget,
    request: &mut Request,
) -> (Option<Charged>, Result<(), ServerError>) {
    // Lent out while the document, parsed once and kept in the request, is measured.
    let variables = std::mem::take(&mut request.variables);
    let operation_name = request.operation_name.take();
    let admitted = measure_and_check(
        settings,
        budget,
        request,
        &variables,
        operation_name.as_deref(),
    )
    .await;
    request.variables = variables;
    request.operation_name = operation_name;
    admitted
}

async fn measure_and_check(
    settings: &Settings,
    budget: &Budget,
    request: &mut Request,
    variables: &Variables,
    operation_name: Option<&str>,
) -> (Option<Charged>, Result<(), ServerError>) {
    let document = match request.parsed_query() {
        Ok(document) => document,
        Err(error) => return (None, Err(coded(error, "graphql_parse_failed"))),
    };
    if !settings.introspection && introspects(document) {
        let refusal = Error::forbidden(
            "introspection_disabled",
            "introspection is turned off on this server; the schema is published as \
             openapi/schema.graphql",
        );
        return (None, Err(to_server_error(&refusal)));
    }
    let measure = measure(document, operation_name, variables);
    let mut charged = Charged {
        complexity: measure.complexity,
        points: points(measure.complexity),
        budget: None,
        remaining: None,
        reset_seconds: 0,
    };
    let checked = check(settings, budget, measure, &mut charged).await;
    (
        Some(charged),
        checked.map_err(|error| to_server_error(&error)),
    )
}

async fn check(
    settings: &Settings,
    budget: &Budget,
    measure: Measure,
    charged: &mut Charged,
) -> Result<(), Error> {
    if measure.depth > settings.max_depth {
        return Err(Error::malformed(
            "query_too_deep",
            format!(
                "the operation is nested {} levels deep; at most {} are allowed",
                measure.depth, settings.max_depth
            ),
        ));
    }
    if measure.complexity > settings.max_complexity {
        return Err(Error::malformed(
            "query_too_complex",
            format!(
                "the operation's complexity is {}; at most {} is allowed (ask for fewer \
                 items with `first`, fewer fields or fewer mutations at once)",
                measure.complexity, settings.max_complexity
            ),
        ));
    }
    let Some(limit) = &budget.limit else {
        return Ok(());
    };
    let limit = Limit {
        cost: charged.points,
        ..limit.clone()
    };
    charged.budget = Some(limit.rate.burst);
    if limit.exceeds_burst() {
        charged.remaining = Some(0);
        return Err(Error::unprocessable(
            "query_too_costly",
            format!(
                "the operation costs {} points, more than the {} the plan allows per minute; \
                 ask for less at once",
                charged.points, limit.rate.burst
            ),
        ));
    }
    let verdict = budget.limiter.check(std::slice::from_ref(&limit)).await;
    if let Some(decision) = verdict.decisions.first() {
        charged.remaining = Some(decision.remaining);
        charged.reset_seconds = whole_seconds(decision.reset);
    }
    if verdict.allowed() {
        Ok(())
    } else {
        metrics::counter!("rate_limited_requests_total", "limit" => "graphql").increment(1);
        Err(Error::rate_limited("graphql", verdict.retry_after()))
    }
}

/// The depth and complexity of the operation a request runs (`operation_name`, or the
/// document's only one). A document naming no such operation measures nothing: it runs
/// nothing, and execution says why.
pub fn measure(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Measure {
    let Some(operation) = selected_operation(document, operation_name) else {
        return Measure::default();
    };
    let mut walk = Walk {
        document,
        variables,
        mutation: operation.ty == OperationType::Mutation,
        spreads: Vec::new(),
    };
    walk.set(&operation.selection_set.node, 1)
}

/// The operation a request runs: the one `operation_name` names, or the document's only
/// one. `None` when there is no such operation, or several and no name.
pub fn selected_operation<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.map(|operation| &operation.node)
}

/// A walk of an operation's selections; `spreads` are the fragments being expanded, so a
/// cycle (which validation refuses anyway) ends instead of recursing for ever.
struct Walk<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    mutation: bool,
    spreads: Vec<&'a str>,
}

impl<'a> Walk<'a> {
    /// The measure of a selection set whose fields are at `level` (the root's are at 1).
    fn set(&mut self, set: &'a SelectionSet, level: usize) -> Measure {
        let mut total = Measure::default();
        for item in &set.items {
            let measure = match &item.node {
                Selection::Field(field) => self.field(&field.node, level),
                Selection::InlineFragment(fragment) => {
                    self.set(&fragment.node.selection_set.node, level)
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    match self.document.fragments.get(name) {
                        Some(fragment) if !self.spreads.contains(&name) => {
                            self.spreads.push(name);
                            let measure = self.set(&fragment.node.selection_set.node, level);
                            self.spreads.pop();
                            measure
                        }
                        _ => Measure::default(),
                    }
                }
            };
            total.depth = total.depth.max(measure.depth);
            total.complexity = total.complexity.saturating_add(measure.complexity);
        }
        total
    }

    fn field(&mut self, field: &'a Field, level: usize) -> Measure {
        let children = self.set(&field.selection_set.node, level + 1);
        let name = field.name.node.as_str();
        let root = level == 1;
        let complexity = if root && self.mutation {
            MUTATION_COMPLEXITY.saturating_add(children.complexity)
        } else if root && CONNECTIONS.contains(&name) {
            self.first(field)
                .saturating_mul(children.complexity)
                .saturating_add(1)
        } else {
            children.complexity.saturating_add(1)
        };
        Measure {
            depth: children.depth.max(level),
            complexity,
        }
    }

    /// A connection's `first`, as the resolver will read it (1-200; 50 when not given).
    fn first(&self, field: &Field) -> usize {
        let Some(argument) = field.get_argument("first") else {
            return DEFAULT_FIRST;
        };
        let value = argument
            .node
            .clone()
            .into_const_with(|name| self.variables.get(&name).cloned().ok_or(()));
        match value {
            Ok(Value::Number(n)) => n.as_u64().map_or(DEFAULT_FIRST, |n| {
                n.clamp(1, u64::from(crate::page::MAX_LIMIT)) as usize
            }),
            _ => DEFAULT_FIRST,
        }
    }
}

/// Whether a document asks for the schema (`__schema` or `__type`), anywhere.
fn introspects(document: &ExecutableDocument) -> bool {
    fn asks(set: &SelectionSet) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => {
                matches!(field.node.name.node.as_str(), "__schema" | "__type")
                    || asks(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => asks(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => false,
        })
    }
    document
        .operations
        .iter()
        .any(|(_, operation)| asks(&operation.node.selection_set.node))
        || document
            .fragments
            .values()
            .any(|fragment| asks(&fragment.node.selection_set.node))
}

/// A parse error of `async-graphql`'s, with a `code` like every other.
fn coded(mut error: ServerError, code: &'static str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", code);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(query: &str, variables: serde_json::Value) -> Measure {
        let document = async_graphql::parser::parse_query(query).unwrap();
        measure(&document, None, &Variables::from_json(variables))
    }

    #[test]
    fn a_connection_counts_its_selection_first_times_and_fifty_by_default() {
        let query = "{ orders(first: 10) { edges { node { id customer { name } } } } }";
        // Per item: edges 1 + node (1 + id 1 + customer (1 + name 1)) = 5.
        let one = measured(query, serde_json::json!({}));
        assert_eq!(one.depth, 5);
        assert_eq!(one.complexity, 10 * 5 + 1);
        let by_variable = measured(
            "query($n: Int) { orders(first: $n) { edges { node { id customer { name } } } } }",
            serde_json::json!({"n": 200}),
        );
        assert_eq!(by_variable.complexity, 200 * 5 + 1);
        let default = measured(
            "{ orders { edges { node { id } } } }",
            serde_json::json!({}),
        );
        assert_eq!(default.complexity, 50 * 3 + 1);
    }

    #[test]
    fn aliases_and_fragments_count_every_time_and_mutations_cost_a_request_each() {
        let aliased: String = (0..3)
            .map(|i| format!("m{i}: deleteProduct(id: \"x\") {{ id }} "))
            .collect();
        let mutation = measured(&format!("mutation {{ {aliased} }}"), serde_json::json!({}));
        assert_eq!(mutation.complexity, 3 * (MUTATION_COMPLEXITY + 1));
        let fragments = measured(
            "{ a: me { ...M } b: me { ...M } } fragment M on Me { actorId scopes }",
            serde_json::json!({}),
        );
        assert_eq!(fragments.complexity, 2 * 3);
        let cyclic = measured(
            "{ me { ...A } } fragment A on Me { ...B } fragment B on Me { ...A actorId }",
            serde_json::json!({}),
        );
        assert_eq!(cyclic.complexity, 2, "a cycle is cut, not followed");
    }

    #[test]
    fn points_are_a_hundredth_of_the_complexity_rounded_up_and_at_least_one() {
        assert_eq!(points(0), 1);
        assert_eq!(points(100), 1);
        assert_eq!(points(101), 2);
        assert_eq!(points(251), 3);
    }
}
