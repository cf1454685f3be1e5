//! The SSRF guard. Requests to a provider's configured base URL are
//! trusted; a host named by the secret itself (a database URL, a
//! self-hosted GitLab, a webhook URL) is resolved first and not contacted
//! when any of its addresses is loopback, private, link-local (the cloud
//! metadata service lives there), shared, multicast or unspecified, unless
//! internal hosts are allowed. The request then goes to the address that
//! was checked, so a second DNS answer cannot redirect it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::CheckError;
use crate::http::Http;

#[derive(Debug, Clone, Copy, Default)]
pub struct Guard {
    pub allow_internal: bool,
}

impl Guard {
    /// The address to contact for `host:port`, or `Skipped` when it is
    /// internal and internal hosts are not allowed.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, CheckError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| CheckError::Skipped(format!("cannot resolve {host}: {e}")))?
            .collect();
        let first = *addrs
            .first()
            .ok_or_else(|| CheckError::Skipped(format!("{host} has no address")))?;
        if !self.allow_internal {
            if let Some(a) = addrs.iter().find(|a| internal(a.ip())) {
                return Err(CheckError::Skipped(format!(
                    "{host} resolves to the internal address {}; not contacted without --allow-internal",
                    a.ip()
                )));
            }
        }
        Ok(first)
    }

    /// A client for `url` that only reaches the address checked.
    pub async fn pin(&self, http: &Http, url: &reqwest::Url) -> Result<Http, CheckError> {
        let host = url
            .host_str()
            .ok_or_else(|| CheckError::Input("the URL names no host".into()))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let addr = self.resolve(host, port).await?;
        Ok(http.pinned(host, addr))
    }
}

/// Whether `ip` is an address no finding should make keyburn contact.
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // AWS metadata
        }
    }
}

fn internal_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(internal(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "140.82.112.3", "2606:4700::1111", "100.128.0.1"] {
            assert!(!internal(a.parse().unwrap()), "{a}");
        }
    }

    #[tokio::test]
    async fn loopback_hosts_are_skipped_unless_allowed() {
        let e = Guard::default().resolve("localhost", 80).await.unwrap_err();
        assert!(matches!(e, CheckError::Skipped(_)), "{e}");
        let ok = Guard {
            allow_internal: true,
        }
        .resolve("127.0.0.1", 80)
        .await
        .unwrap();
        assert_eq!(ok.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
