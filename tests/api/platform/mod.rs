//! The operator API (`/v1/platform/tenants`): creating tenants with their owners, reading,
//! listing and changing them, who may call it, and suspension.

mod access;
mod creating;
mod managing;
mod suspension;
