//! `Idempotency-Key` on POST commands (catalog creates, order placement and transitions),
//! the HTTP half: the header, the request's fingerprint, and the replay headers. Claiming
//! the key and storing the answer inside the command's transaction is the application's
//! half (`crate::idempotency`), which any transport can use.
//!
//! A retry with the same key and the same request, from the same credential, replays the
//! first status, body and `ETag`, marked `Idempotent-Replayed: true`; the same key with
//! another request is 422 `idempotency_key_reused`. Keys are per credential: another
//! credential's key of the same name is another key.

use axum::{
    Json,
    extract::FromRequestParts,
    http::{HeaderValue, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tracing::Instrument;
use utoipa::{
    IntoParams,
    openapi::{
        ObjectBuilder, Required, Type,
        path::{Parameter, ParameterBuilder, ParameterIn},
    },
};

use super::{AppState, etag::with_etag};
use crate::{
    access::Principal,
    db::{Access, TenantTx},
    error::Error,
    idempotency::{self, Claim, StoredAnswer, fingerprint},
};

/// Marks a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The `Idempotency-Key` header, if sent: 1-255 printable ASCII characters.
pub struct IdempotencyKey(Option<String>);

/// The header as the spec publishes it: optional, and exactly as the extractor checks it.
impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(255))
            .pattern(Some("^[!-~]+$"))
            .examples(["checkout-0001"]);
        vec![
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "1-255 printable ASCII characters, chosen by the client (a UUID is a good \
                     choice). Makes retries safe: the same key and body, from the same \
                     credential, replay the first answer (`Idempotent-Replayed: true`) for 24 hours by \
                     default; the same key with another body is 422 `idempotency_key_reused`.",
                ))
                .schema(Some(schema))
                .build(),
        ]
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value.to_str().map_err(|_| idempotency::invalid_key())?;
        idempotency::check_key(key)?;
        Ok(Self(Some(key.to_owned())))
    }
}

impl IdempotencyKey {
    /// Ties the key to the request it came with: `request` names it (`POST /v1/orders`)
    /// and, with `body`, tells a retry from a different request under the same key.
    pub fn bind(self, request: &str, body: &impl Serialize) -> Option<BoundKey> {
        self.0.map(|key| BoundKey {
            key,
            fingerprint: fingerprint(request, body),
        })
    }
}

/// An `Idempotency-Key` with the fingerprint of its request.
pub struct BoundKey {
    key: String,
    fingerprint: Vec<u8>,
}

/// Runs a POST command that the client may retry under an `Idempotency-Key`: claims the
/// key, runs the command, stores its answer and commits — one transaction. `work` returns
/// the resource's version (its `ETag`) and its representation; the answer is `status`
/// with the body and its `ETag`.
pub async fn run<T: Serialize>(
    state: &AppState,
    principal: &Principal,
    key: Option<BoundKey>,
    status: StatusCode,
    work: impl AsyncFnOnce(&mut TenantTx) -> Result<(i64, T), Error>,
) -> Result<Response, Error> {
    let tx = state.db.tenant(principal, Access::ReadWrite).await?;
    let span = tx.span();
    run_in(state, principal, tx, key, status, work)
        .instrument(span)
        .await
}

async fn run_in<T: Serialize>(
    state: &AppState,
    principal: &Principal,
    mut tx: TenantTx,
    key: Option<BoundKey>,
    status: StatusCode,
    work: impl AsyncFnOnce(&mut TenantTx) -> Result<(i64, T), Error>,
) -> Result<Response, Error> {
    let Some(BoundKey { key, fingerprint }) = key else {
        let (version, value) = work(&mut tx).await?;
        tx.commit().await?;
        return Ok((status, with_etag(version, value)).into_response());
    };
    let claimed = match idempotency::claim(&mut tx, principal, &key, &fingerprint).await? {
        Claim::Fresh(claimed) => claimed,
        Claim::Replay(answer) => {
            tx.commit().await?;
            return Ok(replay(answer));
        }
    };
    let (version, value) = work(&mut tx).await?;
    let answer = StoredAnswer {
        status: status.as_u16(),
        body: serde_json::to_value(&value).map_err(anyhow::Error::from)?,
        version: Some(version),
    };
    idempotency::store(&mut tx, claimed, &answer, &state.idempotency_ttl).await?;
    tx.commit().await?;
    Ok((status, with_etag(version, answer.body)).into_response())
}

/// The first answer again, marked as a replay.
fn replay(answer: StoredAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = match answer.version {
        Some(version) => with_etag(version, answer.body),
        None => Json(answer.body).into_response(),
    };
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    (status, response).into_response()
}
