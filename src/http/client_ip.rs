//! The client's address, for the login throttle and the audit log.
//!
//! By default it is the TCP peer, from `ConnectInfo` (which `startup` provides by serving
//! the router with `into_make_service_with_connect_info`). Behind a load balancer every
//! peer is the balancer, so `TENANTRY_CLIENT_IP_HEADER` may name a header a trusted proxy
//! sets or appends to (`X-Forwarded-For`, `X-Real-IP`): then the last address in it is the
//! client — the one the nearest proxy wrote; earlier ones are whatever the client sent. If
//! the server can also be reached without that proxy, anyone can write any address there,
//! escaping the per-client throttle or aiming it at someone else: that is why it is off by
//! default. Without the header (or with no address in its last entry) the peer is used.
//!
//! This module must never refuse a request: an address it cannot find is the unspecified
//! one (all such requests then share one throttle key), never an error.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{Extensions, HeaderMap, HeaderName, request::Parts},
};

use super::AppState;

/// The address a request came from, as far as the server can trust it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        Ok(Self::of(
            &parts.headers,
            &parts.extensions,
            state.client_ip_header.as_ref(),
        ))
    }
}

impl ClientIp {
    /// The address of a request with these headers and extensions: the last address of
    /// `trusted_header` when one is configured and present, else the TCP peer.
    pub fn of(
        headers: &HeaderMap,
        extensions: &Extensions,
        trusted_header: Option<&HeaderName>,
    ) -> Self {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        let forwarded = trusted_header.and_then(|name| last_address(headers, name));
        Self(
            forwarded
                .or(peer)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        )
    }
}

/// The last address of the last `name` header: `203.0.113.7`, `2001:db8::1`, or either
/// with a port (`203.0.113.7:4711`, `[2001:db8::1]:4711`), as some proxies write them.
fn last_address(headers: &HeaderMap, name: &HeaderName) -> Option<IpAddr> {
    let last = headers
        .get_all(name)
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim();
    last.parse::<IpAddr>()
        .or_else(|_| last.parse::<SocketAddr>().map(|address| address.ip()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_last_address_is_the_one_the_nearest_proxy_wrote() {
        let name = HeaderName::from_static("x-forwarded-for");
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(
            last_address(&header(&["198.51.100.1, 203.0.113.7"]), &name),
            ip("203.0.113.7")
        );
        assert_eq!(
            last_address(&header(&["198.51.100.1", "203.0.113.8"]), &name),
            ip("203.0.113.8")
        );
        assert_eq!(
            last_address(&header(&["[2001:db8::1]:4711"]), &name),
            ip("2001:db8::1")
        );
        assert_eq!(
            last_address(&header(&["203.0.113.7:4711"]), &name),
            ip("203.0.113.7")
        );
        assert_eq!(
            last_address(&header(&["203.0.113.7, not-an-address"]), &name),
            None,
            "an earlier entry is never used: the client may have written it"
        );
        assert_eq!(last_address(&HeaderMap::new(), &name), None);
    }
}
