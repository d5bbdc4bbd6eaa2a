//! Where a webhook may be sent, and the HTTP client that sends it.
//!
//! A tenant chooses the URL, so without a guard the server would make requests for it into
//! its own network: loopback, the private ranges, the cloud metadata address
//! (169.254.169.254). Unless the operator allows private targets
//! (`TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS`), every address such a request could reach is
//! checked:
//! - a URL whose host is an IP literal is refused when the address is ([`check_url`]) —
//!   the client never resolves a literal, so this check is the only one;
//! - a host name is resolved by [`GuardedResolver`], which refuses the name when *any* of
//!   its addresses is forbidden (checking only the first would let a name with one public
//!   and one private address through), so the connection is made only to addresses that
//!   were checked, and DNS rebinding between check and connect cannot redirect it;
//! - redirects are never followed (a public receiver could otherwise point us inwards).
//!
//! Both checks run when an endpoint is saved (a literal refused, a name resolved if it
//! can be) and again on every attempt.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::error::Error;

/// The longest URL an endpoint may have.
pub const MAX_URL_CHARS: usize = 2048;
/// How long saving an endpoint waits for its host to resolve before accepting it anyway
/// (it is checked again on every attempt).
const SAVE_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The message of a URL that is not one.
pub const URL_MESSAGE: &str =
    "must be an absolute http or https URL with a host, at most 2048 characters";

/// Parses an endpoint URL: absolute, `http` or `https`, with a host. Input that breaks the
/// published rule (`WebhookUrl`'s schema) is `validation_failed`; input that keeps it but
/// is still no URL (a bad port, a malformed host) is refused as `invalid_url`, so that
/// what the schema admits is never a validation failure.
pub fn parse_url(value: &str) -> Result<Url, Error> {
    if !fits_rule(value) {
        return Err(Error::invalid("url", URL_MESSAGE));
    }
    let refused = || Error::refused_field("invalid_url", "url", "is not a URL that can be reached");
    let url = Url::parse(value).map_err(|_| refused())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(refused());
    }
    // Normalising can lengthen it (percent-encoding, punycode): what is stored must fit.
    if url.as_str().len() > MAX_URL_CHARS {
        return Err(Error::refused_field(
            "invalid_url",
            "url",
            "is longer than 2048 characters once normalised",
        ));
    }
    Ok(url)
}

/// The published rule as code: `^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+([/?#]\S*)?$`, at
/// most [`MAX_URL_CHARS`] characters (`\s` as JSON Schema's regular expressions read it).
fn fits_rule(value: &str) -> bool {
    let whitespace = |c: char| (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}';
    let lower = value.get(..8).unwrap_or(value).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &value[8..]
    } else if lower.starts_with("http://") {
        &value[7..]
    } else {
        return false;
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    value.chars().count() <= MAX_URL_CHARS && host_end > 0 && !rest.chars().any(whitespace)
}

/// Whether connecting to `ip` could reach something that is not the public internet:
/// loopback, private (RFC 1918, unique-local fc00::/7), link-local (169.254/16 — which
/// holds the metadata address — and fe80::/10), unspecified, broadcast, shared (CGNAT
/// 100.64/10), multicast, reserved and documentation ranges, and IPv6 forms that carry such
/// an IPv4 address (mapped, compatible, NAT64, 6to4).
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let segments = ip.segments();
    let embedded_v4 = |high: u16, low: u16| {
        Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
    };
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        // IPv4-compatible (::a.b.c.d, deprecated): the IPv4 address decides.
        || (segments[..6] == [0; 6] && forbidden_v4(embedded_v4(segments[6], segments[7])))
        // NAT64 (64:ff9b::/96) reaches the IPv4 address it carries.
        || (segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
            && forbidden_v4(embedded_v4(segments[6], segments[7])))
        // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits.
        || (segments[0] == 0x2002 && forbidden_v4(embedded_v4(segments[1], segments[2])))
}

/// The refusal of a target, as an attempt records it and an API caller sees it.
pub fn forbidden_target() -> Error {
    Error::refused_field(
        "webhook_target_forbidden",
        "url",
        "resolves to a loopback, private, link-local or otherwise non-public address",
    )
}

/// Checks what can be checked without resolving: the scheme, and an IP-literal host.
pub fn check_url(url: &Url, allow_private: bool) -> Result<(), Error> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid("url", URL_MESSAGE));
    }
    if allow_private {
        return Ok(());
    }
    match url.host() {
        Some(Host::Ipv4(ip)) if forbidden_v4(ip) => Err(forbidden_target()),
        Some(Host::Ipv6(ip)) if forbidden_v6(ip) => Err(forbidden_target()),
        Some(_) => Ok(()),
        None => Err(Error::invalid("url", URL_MESSAGE)),
    }
}

/// The check when an endpoint is saved: [`check_url`], then, for a host name, its
/// addresses if it resolves within a moment. A name that does not resolve (yet) is
/// accepted: every attempt resolves and checks it again.
pub async fn check_target(url: &Url, allow_private: bool) -> Result<(), Error> {
    check_url(url, allow_private)?;
    if allow_private {
        return Ok(());
    }
    let Some(Host::Domain(name)) = url.host() else {
        return Ok(());
    };
    let lookup = tokio::net::lookup_host((name, 0));
    match tokio::time::timeout(SAVE_RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(addresses)) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            if addresses.iter().any(|address| is_forbidden(address.ip())) {
                Err(forbidden_target())
            } else {
                Ok(())
            }
        }
        Ok(Err(_)) | Err(_) => Ok(()),
    }
}

/// A name that resolves to a forbidden address.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to a non-public address")]
pub struct ForbiddenName(String);

/// Resolves with the system resolver (through tokio) and refuses a name any of whose
/// addresses is forbidden — unless private targets are allowed.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl GuardedResolver {
    /// The addresses of `host`, all of them checked.
    pub async fn resolve_host(
        host: &str,
        allow_private: bool,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        if !allow_private && addresses.iter().any(|address| is_forbidden(address.ip())) {
            return Err(Box::new(ForbiddenName(host.to_owned())));
        }
        Ok(addresses)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addresses = Self::resolve_host(name.as_str(), allow_private).await?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The client deliveries are sent with: no redirects, the connect and total timeouts, no
/// proxy from the environment (a proxy would resolve the name, not us), and the guarded
/// resolver.
pub fn client(
    connect_timeout: Duration,
    timeout: Duration,
    allow_private: bool,
) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .no_proxy()
        .user_agent(concat!("tenantry-webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| anyhow::anyhow!("building the webhook client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_forbidden_in_every_form() {
        for forbidden in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.8",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.10",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
        ] {
            assert!(is_forbidden(ip(forbidden)), "{forbidden} must be forbidden");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_forbidden(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn urls_must_be_absolute_http_or_https_with_a_host() {
        for bad in [
            "ftp://example.com/hook",
            "example.com/hook",
            "/relative",
            "file:///etc/passwd",
            "http://",
            "javascript:alert(1)",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} must be refused");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(parse_url(&long).is_err());
        // The rule's shape, but no URL: refused with a code of its own.
        let lengthened = format!("https://example.com/{}", "é".repeat(1000));
        for unreachable in [
            "http://a:99999/",
            "http://[::1/",
            "https://%zz/",
            &lengthened,
        ] {
            let error = parse_url(unreachable).unwrap_err();
            assert_eq!(error.code(), "invalid_url", "{unreachable}");
        }
        assert!(parse_url("https://example.com/hooks?x=1").is_ok());
    }

    #[test]
    fn literal_forbidden_hosts_are_refused_unless_private_targets_are_allowed() {
        for literal in [
            "http://127.0.0.1:8080/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            // Numeric forms of 127.0.0.1 are read as the address they are.
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            let url = parse_url(literal).unwrap();
            let refused = check_url(&url, false).unwrap_err();
            assert_eq!(refused.code(), "webhook_target_forbidden", "{literal}");
            assert!(
                check_url(&url, true).is_ok(),
                "{literal} allowed when private targets are"
            );
        }
        assert!(check_url(&parse_url("https://93.184.216.34/").unwrap(), false).is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_when_resolved_and_when_saved() {
        let refused = GuardedResolver::resolve_host("localhost", false).await;
        assert!(refused.is_err(), "localhost resolves to loopback");
        assert!(
            GuardedResolver::resolve_host("localhost", true)
                .await
                .is_ok()
        );
        let url = parse_url("http://localhost:9/hook").unwrap();
        let error = check_target(&url, false).await.unwrap_err();
        assert_eq!(error.code(), "webhook_target_forbidden");
    }

    #[tokio::test]
    async fn the_client_refuses_to_connect_to_a_name_that_resolves_to_loopback() {
        // Something listens there, so only the guard can stop the request.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = client(Duration::from_secs(2), Duration::from_secs(2), false).unwrap();
        let error = client
            .post(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(error.is_connect() || error.is_request(), "{error:?}");
    }
}
