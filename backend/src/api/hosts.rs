//! The host names this server answers for (`--allowed-hosts`): `AppState` holds them,
//! `browser.rs` refuses the others (DNS rebinding).

use std::net::IpAddr;

/// The host names requests may carry (`--allowed-hosts`).
#[derive(Debug, Clone)]
pub enum AllowedHosts {
    /// Every host (`--allowed-hosts '*'`).
    Any,
    /// `localhost`, IP addresses (DNS rebinding needs a name) and these names.
    Names(Vec<String>),
}

impl AllowedHosts {
    pub fn from_flag(names: &[String]) -> Self {
        if names.iter().any(|n| n.trim() == "*") {
            return AllowedHosts::Any;
        }
        AllowedHosts::Names(
            names
                .iter()
                .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
        )
    }

    pub(super) fn allows(&self, host: &str) -> bool {
        let AllowedHosts::Names(names) = self else {
            return true;
        };
        // Compared without a lowercase copy: this runs on every request.
        let name = host_name(host).trim_end_matches('.');
        let localhost = |suffix: &str| {
            name.len() >= suffix.len()
                && name.is_char_boundary(name.len() - suffix.len())
                && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        };
        name.eq_ignore_ascii_case("localhost")
            || localhost(".localhost")
            || name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok()
            || names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The name part of a `Host` value: without the port, brackets kept on IPv6.
pub(super) fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_and_addresses_pass_other_names_only_when_listed() {
        let hosts = AllowedHosts::from_flag(&["Chat.Example.com".into()]);
        for ok in [
            "localhost:8080",
            "LOCALHOST",
            "app.localhost:3000",
            "127.0.0.1:8080",
            "10.0.0.7",
            "[::1]:8080",
            "chat.example.com",
            "chat.example.com.:443",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example:8080",
            "example.com",
            "chat.example.com.evil.example",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        assert!(AllowedHosts::from_flag(&["*".into()]).allows("evil.example"));
    }

    #[test]
    fn the_port_is_not_part_of_the_name() {
        assert_eq!(host_name("a.example:80"), "a.example");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("a.example"), "a.example");
    }
}
