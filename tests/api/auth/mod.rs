//! Authentication: access tokens (forged, malformed, out of date), login sessions
//! (refresh, logout, user changes reaching live tokens), EdDSA signing and the JWKS, and
//! passwords (their storage, login failures that reveal nothing).

mod access_tokens;
mod jwks;
mod passwords;
mod sessions;
