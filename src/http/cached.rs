//! Reads answered through the read cache (`cache`): the cached JSON with its `ETag`, or
//! 304 when the client's copy is current — neither touching the database when warm.

use std::future::Future;

use axum::response::Response;
use serde::Serialize;
use uuid::Uuid;

use super::{AppState, etag::Preconditions};
use crate::{access::Principal, cache::Key, error::Error, versioning::Versioned};

/// Answers the `kind` resource `id` of the principal's tenant from the read cache, reading
/// it with `read` when it is not cached. The key's tenant is the verified principal's:
/// nothing the client sent. `read` gets its own handles (it may outlive this call's
/// borrows while concurrent readers wait for it).
pub async fn read_through<T, F, Fut>(
    state: &AppState,
    principal: &Principal,
    preconditions: &Preconditions,
    kind: &'static str,
    id: Uuid,
    read: F,
) -> Result<Response, Error>
where
    T: Serialize + Versioned,
    F: Fn(AppState, Principal) -> Fut,
    Fut: Future<Output = Result<T, Error>> + Send + 'static,
{
    let key = Key {
        tenant: principal.tenant_id(),
        kind,
        id,
    };
    let cached = state
        .reads
        .get_or_load(key, || {
            let reading = read(state.clone(), principal.clone());
            async move {
                let resource = reading.await?;
                let json = serde_json::to_vec(&resource)
                    .map_err(|e| Error::internal(anyhow::Error::from(e)))?;
                Ok((resource.version(), json.into()))
            }
        })
        .await?;
    Ok(preconditions.cached_response(cached.version, cached.body.clone()))
}
