//! Authentication as a layer, and the extractors handlers build on it.
//!
//! [`authenticate`] runs for every request, early in the middleware stack: it reads the
//! tenant credential (`Authorization: Bearer <credential>` or `X-API-Key: <key>`), has
//! `auth` verify it, records the tenant on the request span, and leaves the outcome in the
//! request extensions. The layers inside it — where per-tenant quotas, rate limits and
//! metering sit — can therefore see the [`Principal`] of every authenticated request.
//! The layer refuses nothing itself: a route that needs a principal asks for one with the
//! [`Principal`] or [`Authorized`] extractor, which answers the stored failure (401 or 403);
//! routes that need none (health, login, the operator API) never look.
//!
//! The operator API takes a different credential, checked by the [`Operator`] extractor.

use std::marker::PhantomData;

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, header, request::Parts},
    middleware::Next,
    response::Response,
};

use super::AppState;
use crate::{
    access::{Operator, Principal, RequiredScope},
    auth::{self, Authenticated, Presented},
    error::Error,
    realtime::session::Credential,
};

/// What [`authenticate`] concluded about a request's tenant credential.
#[derive(Clone)]
enum Authentication {
    /// No credential was sent (health checks, login): nothing to verify, nothing to build.
    Anonymous,
    Verified(Authenticated),
    Refused(Error),
}

/// The authentication layer: verifies the request's tenant credential, if any, and leaves
/// the outcome for the layers and extractors inside it.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let outcome = match credential(request.headers()) {
        None => Authentication::Anonymous,
        Some(Err(refused)) => Authentication::Refused(refused),
        Some(Ok(presented)) => match auth::authenticate(&state.db, &state.auth, presented).await {
            Ok(authenticated) => {
                let span = tracing::Span::current();
                span.record(
                    "tenant_id",
                    tracing::field::display(authenticated.principal.tenant_id()),
                );
                span.record("credential", authenticated.principal.credential_kind());
                Authentication::Verified(authenticated)
            }
            Err(refused) => Authentication::Refused(refused),
        },
    };
    request.extensions_mut().insert(outcome);
    next.run(request).await
}

/// The principal [`authenticate`] verified for a request, if it verified one — for the
/// layers inside it (metering) that act on authenticated requests and leave the rest alone.
pub fn verified_principal(extensions: &axum::http::Extensions) -> Option<&Principal> {
    verified(extensions).map(|authenticated| &authenticated.principal)
}

/// The credential [`authenticate`] verified for a request, with its plan's rate (for rate
/// limiting).
pub fn verified(extensions: &axum::http::Extensions) -> Option<&Authenticated> {
    match extensions.get::<Authentication>() {
        Some(Authentication::Verified(authenticated)) => Some(authenticated),
        _ => None,
    }
}

/// `X-API-Key: <key>` or `Authorization: Bearer <credential>`; `None` when neither header
/// was sent.
fn credential(headers: &HeaderMap) -> Option<Result<Presented<'_>, Error>> {
    if let Some(key) = headers.get("x-api-key") {
        return Some(
            key.to_str()
                .map(|key| Presented::ApiKey(key.trim()))
                .map_err(|_| Error::unauthenticated("malformed X-API-Key header")),
        );
    }
    let Ok(value) = headers.get(header::AUTHORIZATION)?.to_str() else {
        return Some(Err(Error::unauthenticated(
            "malformed Authorization header",
        )));
    };
    Some(match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Presented::Bearer(token.trim()))
        }
        _ => Err(Error::unauthenticated(
            "the Authorization scheme must be Bearer",
        )),
    })
}

/// The tenant credential a request presents, owned, for a realtime session that checks it
/// again while it lives; `None` when it presents none.
pub fn presented_credential(headers: &HeaderMap) -> Option<Result<Credential, Error>> {
    credential(headers).map(|presented| {
        presented.map(|presented| match presented {
            Presented::ApiKey(key) => Credential::api_key(key),
            Presented::Bearer(token) => Credential::bearer(token),
        })
    })
}

/// Refuses a URL whose query string names a credential (`token_in_query`): URLs end up in
/// logs, proxies and browser history. For the WebSocket routes, whose browser clients
/// cannot set headers and might be tempted.
pub fn refuse_credential_in_url(uri: &axum::http::Uri) -> Result<(), Error> {
    let names_one = uri.query().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes()).any(|(name, _)| {
            matches!(
                name.to_ascii_lowercase().as_str(),
                "token" | "access_token" | "api_key" | "apikey" | "key" | "authorization"
            )
        })
    });
    if names_one {
        return Err(Error::malformed(
            "token_in_query",
            "never put a credential in the URL (it ends up in logs): send it in the Authorization header or in the first message",
        ));
    }
    Ok(())
}

/// The verified caller, or the refusal the authentication layer recorded.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        match parts.extensions.get::<Authentication>() {
            Some(Authentication::Verified(authenticated)) => Ok(authenticated.principal.clone()),
            Some(Authentication::Refused(refused)) => Err(refused.clone()),
            Some(Authentication::Anonymous) => Err(Error::unauthenticated(
                "send `Authorization: Bearer <token>` or `X-API-Key: <key>`",
            )),
            None => Err(Error::internal(anyhow::anyhow!(
                "the authentication layer is not in the middleware stack"
            ))),
        }
    }
}

/// A principal that holds the scope `S` — the route's declared requirement, checked
/// before the body is read. (The application function checks it again: it serves other
/// transports too.)
pub struct Authorized<S: RequiredScope>(pub Principal, pub PhantomData<S>);

impl<St: Send + Sync, S: RequiredScope> FromRequestParts<St> for Authorized<S> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Error> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require(S::SCOPE)?;
        Ok(Self(principal, PhantomData))
    }
}

/// The operator, from `Authorization: Bearer <operator token>`.
impl FromRequestParts<AppState> for Operator {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            Some(token) => state.operator.verify(token),
            None => Err(Error::unauthenticated(
                "send `Authorization: Bearer <operator token>`",
            )),
        }
    }
}
