//! `--auth proxy`: an authenticating reverse proxy names the user in a header. The header
//! is believed only from a peer in `--trusted-proxies`, and only when it appears once:
//! anyone else who reaches the port could name any user.

use super::{unauthenticated, AuthError, User};
use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// `--trusted-proxies` when it is not given: this host only.
pub const LOOPBACK: &str = "127.0.0.0/8,::1/128";

#[derive(Debug, Clone)]
pub struct ProxyAuth {
    header: HeaderName,
    trusted: Vec<IpNet>,
}

impl ProxyAuth {
    pub fn new(header: &str, trusted: &[String]) -> Result<Self, String> {
        let header = HeaderName::try_from(header)
            .map_err(|e| format!("bad --auth-header {header:?}: {e}"))?;
        let trusted = parse_networks(trusted)?;
        Ok(ProxyAuth { header, trusted })
    }

    /// The user the header names, when `peer` is a trusted proxy and the header is there
    /// exactly once.
    pub fn user(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<User, AuthError> {
        let name = &self.header;
        // No peer: the request did not come over a socket (an in-process call).
        let trusted = peer.is_some_and(|p| self.trusts(p.ip()));
        if !trusted {
            return Err(unauthenticated(format!(
                "The {name} header is only accepted from a trusted proxy"
            )));
        }
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value
                .to_str()
                .ok()
                .and_then(User::parse)
                .ok_or_else(|| unauthenticated(format!("No user in the {name} header"))),
            (Some(_), Some(_)) => Err(unauthenticated(format!(
                "The {name} header appears more than once"
            ))),
            (None, _) => Err(unauthenticated(format!("No user in the {name} header"))),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        // An IPv4 peer on an IPv6 socket shows as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// CIDR blocks (`10.0.0.0/8`) or single addresses (`10.1.2.3`), blanks ignored.
pub fn parse_networks(items: &[String]) -> Result<Vec<IpNet>, String> {
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("bad --trusted-proxies entry {s:?}: expected a CIDR block such as 10.0.0.0/8"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth(trusted: &str) -> ProxyAuth {
        let items: Vec<String> = trusted.split(',').map(str::to_owned).collect();
        ProxyAuth::new("x-forwarded-user", &items).expect("valid")
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().expect("ip"), 40_000))
    }

    fn named(users: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for u in users {
            headers.append("x-forwarded-user", HeaderValue::from_str(u).expect("value"));
        }
        headers
    }

    #[test]
    fn only_a_trusted_peer_names_the_user() {
        let a = auth(LOOPBACK);
        let alice = named(&["alice"]);
        for ok in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(a.user(&alice, peer(ok)).expect(ok).as_str(), "alice");
        }
        for refused in ["10.0.0.1", "192.168.1.5", "::2"] {
            assert!(a.user(&alice, peer(refused)).is_err(), "{refused}");
        }
        assert!(a.user(&alice, None).is_err(), "no peer, no trust");
        let lan = auth("10.0.0.0/8, 192.168.1.5");
        assert!(lan.user(&alice, peer("10.200.0.1")).is_ok());
        assert!(lan.user(&alice, peer("192.168.1.5")).is_ok());
        assert!(lan.user(&alice, peer("127.0.0.1")).is_err());
    }

    #[test]
    fn a_header_twice_or_missing_is_refused() {
        let a = auth(LOOPBACK);
        assert!(a
            .user(&named(&["alice", "bob"]), peer("127.0.0.1"))
            .is_err());
        assert!(a
            .user(&named(&["alice", "alice"]), peer("127.0.0.1"))
            .is_err());
        assert!(a.user(&named(&[]), peer("127.0.0.1")).is_err());
    }

    #[test]
    fn bad_blocks_are_refused() {
        for bad in ["10.0.0.0/33", "localhost", "10.0.0/8"] {
            assert!(parse_networks(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
