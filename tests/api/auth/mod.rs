//! Authentication and the scope gate: access tokens (forged, malformed, out of date), login
//! sessions (refresh, logout, user changes reaching live tokens), EdDSA signing and the
//! JWKS, service tokens (recorded, revocable), passwords (their storage, login failures
//! that reveal nothing), and every tenant route requiring a credential and its scope.

mod access_tokens;
mod jwks;
mod passwords;
mod scopes;
mod service_tokens;
mod sessions;
