//! What a GraphQL operation may cost, decided after it is parsed and validated and before
//! any resolver runs — so a query too deep, too large or over its budget never touches
//! the database.
//!
//! - **Depth**: at most [`Settings::max_depth`] levels of selections (`query_too_deep`).
//! - **Complexity**: every selected field counts 1, a connection counts its selection
//!   `first` times (50 when `first` is not given), a mutation [`MUTATION_COMPLEXITY`] more;
//!   aliases and fragments count every time they select. At most
//!   [`Settings::max_complexity`] (`query_too_complex`).
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
//! [`MUTATION_COMPLEXITY`]: super::mutation::MUTATION_COMPLEXITY

use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::{
    ServerError, ServerResult, ValidationResult, Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextValidation,
    },
    parser::types::ExecutableDocument,
};

use super::error::to_server_error;
use crate::{
    error::{Error, whole_seconds},
    traffic::{Limit, Limiter},
};

/// Complexity per budget point.
pub const COMPLEXITY_PER_POINT: usize = 100;

/// The limits every operation is held to (`TENANTRY_GRAPHQL_*`), read with the rest of the
/// configuration.
pub use crate::config::GraphQlSettings as Settings;

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

/// The extension that holds every operation to its limits and reports its cost.
pub struct CostLimits(pub Settings);

impl ExtensionFactory for CostLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Costing {
            settings: self.0.clone(),
            charged: Mutex::new(None),
        })
    }
}

/// One operation's cost, as reported.
struct Charged {
    complexity: usize,
    points: u32,
    budget: Option<u32>,
    remaining: Option<u32>,
    reset_seconds: u64,
}

impl Charged {
    fn value(&self) -> Value {
        let mut cost = serde_json::json!({"complexity": self.complexity, "points": self.points});
        if let (Some(budget), Some(remaining)) = (self.budget, self.remaining) {
            cost["budget"] = budget.into();
            cost["remaining"] = remaining.into();
            cost["resetSeconds"] = self.reset_seconds.into();
        }
        Value::from_json(cost).unwrap_or(Value::Null)
    }
}

struct Costing {
    settings: Settings,
    charged: Mutex<Option<Charged>>,
}

impl Costing {
    fn remember(&self, charged: Charged) {
        *self.charged.lock().unwrap_or_else(PoisonError::into_inner) = Some(charged);
    }

    /// Checks the limits of a validated operation and charges its points.
    async fn admit(
        &self,
        ctx: &ExtensionContext<'_>,
        result: &ValidationResult,
    ) -> Result<(), Error> {
        if result.depth > self.settings.max_depth {
            return Err(Error::malformed(
                "query_too_deep",
                format!(
                    "the operation is nested {} levels deep; at most {} are allowed",
                    result.depth, self.settings.max_depth
                ),
            ));
        }
        if result.complexity > self.settings.max_complexity {
            return Err(Error::malformed(
                "query_too_complex",
                format!(
                    "the operation's complexity is {}; at most {} is allowed (ask for fewer \
                     items with `first`, fewer fields or fewer mutations at once)",
                    result.complexity, self.settings.max_complexity
                ),
            ));
        }
        let points = points(result.complexity);
        let mut charged = Charged {
            complexity: result.complexity,
            points,
            budget: None,
            remaining: None,
            reset_seconds: 0,
        };
        let Some(Budget {
            limiter,
            limit: Some(limit),
        }) = ctx.data_opt::<Budget>()
        else {
            self.remember(charged);
            return Ok(());
        };
        let limit = Limit {
            cost: points,
            ..limit.clone()
        };
        charged.budget = Some(limit.rate.burst);
        if limit.exceeds_burst() {
            charged.remaining = Some(0);
            self.remember(charged);
            return Err(Error::unprocessable(
                "query_too_costly",
                format!(
                    "the operation costs {points} points, more than the {} the plan allows \
                     per minute; ask for less at once",
                    limit.rate.burst
                ),
            ));
        }
        let verdict = limiter.check(std::slice::from_ref(&limit)).await;
        if let Some(decision) = verdict.decisions.first() {
            charged.remaining = Some(decision.remaining);
            charged.reset_seconds = whole_seconds(decision.reset);
        }
        self.remember(charged);
        if verdict.allowed() {
            Ok(())
        } else {
            metrics::counter!("rate_limited_requests_total", "limit" => "graphql").increment(1);
            Err(Error::rate_limited("graphql", verdict.retry_after()))
        }
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Costing {
    async fn request(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextRequest<'_>,
    ) -> async_graphql::Response {
        let mut response = next.run(ctx).await;
        let charged = self
            .charged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(charged) = charged {
            response
                .extensions
                .insert("cost".to_owned(), charged.value());
        }
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|error| coded(error, "graphql_parse_failed"))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|error| coded(error, "graphql_validation_failed"))
                .collect::<Vec<_>>()
        })?;
        match self.admit(ctx, &result).await {
            Ok(()) => Ok(result),
            Err(error) => Err(vec![to_server_error(&error)]),
        }
    }
}

/// A parse or validation error of `async-graphql`'s, with a `code` like every other.
fn coded(mut error: ServerError, code: &'static str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", code);
    error
}
