//! `BaseUrl`: where an upstream provider lives (`http(s)://host[:port][/prefix]`). Parsed by hand
//! to a deliberately small grammar: no userinfo, query or fragment, no IDNA, no normalisation
//! beyond lower-casing the host and trimming a trailing `/`. A general URL parser would accept
//! (and then need rejecting) far more than an upstream address may contain.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::units::quote;

/// A validated upstream base URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl {
    /// `true` for `https://`.
    pub tls: bool,
    /// Host name (lower-cased), IPv4 address, or IPv6 address *without* brackets, so that
    /// `host.parse::<IpAddr>()` works; [`BaseUrl::authority`] adds the brackets back.
    pub host: String,
    /// Port; 80 or 443 when the URL gives none.
    pub port: u16,
    /// Path prefix without a trailing `/`: `""` or e.g. `"/v1"`. Request paths are appended to it.
    pub path: String,
}

impl BaseUrl {
    /// Parses and validates `text`. The error message is meant to follow the key path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = strip_prefix_ignore_case(text, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(text, "http://") {
            (false, rest)
        } else {
            return Err(format!(
                "expected http:// or https:// URL, got {}",
                quote(text)
            ));
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        if authority.contains('@') {
            // Do not echo the URL: the part before '@' is usually a password.
            return Err(
                "must not contain user info (user:password@); give credentials in api_key"
                    .to_owned(),
            );
        }
        if path.contains(['?', '#']) {
            return Err(format!(
                "must not contain a query (?) or fragment (#), got {}",
                quote(text)
            ));
        }
        let (host, port) =
            parse_authority(authority, tls).map_err(|why| format!("{why} in {}", quote(text)))?;
        let path = parse_path(path).map_err(|why| format!("{why} in {}", quote(text)))?;
        Ok(Self {
            tls,
            host,
            port,
            path,
        })
    }

    /// The port implied by the scheme: 443 with TLS, 80 without.
    pub fn default_port(&self) -> u16 {
        if self.tls {
            443
        } else {
            80
        }
    }

    /// The value for the `Host` header: the host (IPv6 in brackets), plus `:port` when the port
    /// is not the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Prints the URL back in canonical form, e.g. `https://api.example.com/v1`.
impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Splits `host[:port]` / `[v6][:port]` and validates both parts.
fn parse_authority(authority: &str, tls: bool) -> Result<(String, u16), String> {
    if authority.is_empty() {
        return Err("missing host".to_owned());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let close = bracketed
            .find(']')
            .ok_or_else(|| "unclosed '[' in IPv6 host".to_owned())?;
        let v6 = &bracketed[..close];
        let ip = v6
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("invalid IPv6 address {}", quote(v6)))?;
        let after = &bracketed[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("unexpected text after ']'".to_owned()),
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        (parse_host(host)?, port)
    };
    let port = match port {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return Err(format!("invalid port {} (expected 1..=65535)", quote(text))),
        },
    };
    Ok((host, port))
}

/// A DNS-style name (letters, digits, `-`, `_`, dot-separated labels) or a dotted IPv4 address.
fn parse_host(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Err("missing host".to_owned());
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| format!("invalid IPv4 address {}", quote(host)));
    }
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(format!(
            "invalid host {} (expected a name like api.example.com, an IPv4 address, or [IPv6])",
            quote(host)
        ));
    }
    Ok(host.to_ascii_lowercase())
}

/// Validates the path prefix and trims trailing slashes ("/" becomes "").
fn parse_path(path: &str) -> Result<String, String> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3);
            if !matches!(hex, Some(h) if h.iter().all(u8::is_ascii_hexdigit)) {
                return Err("invalid percent-escape in path".to_owned());
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if !allowed {
            let c = path[i..].chars().next().unwrap_or('?');
            return Err(format!(
                "invalid character {c:?} in path (percent-encode it)"
            ));
        }
        i += 1;
    }
    Ok(path.trim_end_matches('/').to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ok(text: &str) -> BaseUrl {
        match BaseUrl::parse(text) {
            Ok(url) => url,
            Err(e) => panic!("{text:?} rejected: {e}"),
        }
    }

    fn err(text: &str) -> String {
        match BaseUrl::parse(text) {
            Ok(url) => panic!("{text:?} accepted as {url:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_http_with_port_and_prefix() {
        let url = ok("http://127.0.0.1:18000/v1");
        assert_eq!(
            url,
            BaseUrl {
                tls: false,
                host: "127.0.0.1".to_owned(),
                port: 18000,
                path: "/v1".to_owned()
            }
        );
        assert_eq!(url.authority(), "127.0.0.1:18000");
        assert_eq!(url.to_string(), "http://127.0.0.1:18000/v1");
    }

    #[test]
    fn default_ports_and_trailing_slashes() {
        let url = ok("https://API.OpenAI.com/v1/");
        assert!(url.tls);
        assert_eq!(url.host, "api.openai.com");
        assert_eq!(url.port, 443);
        assert_eq!(url.path, "/v1");
        assert_eq!(url.authority(), "api.openai.com");
        assert_eq!(ok("http://h").port, 80);
        assert_eq!(ok("http://h/").path, "");
        assert_eq!(ok("http://h//").path, "");
        assert_eq!(ok("HTTP://h:80").authority(), "h");
        assert_eq!(ok("https://h:80").authority(), "h:80");
        assert_eq!(ok("http://my_service:8000/a/b%20c").path, "/a/b%20c");
    }

    #[test]
    fn ipv6() {
        let url = ok("http://[::1]:8000/v1");
        assert_eq!(url.host, "::1");
        assert_eq!(url.port, 8000);
        assert_eq!(url.authority(), "[::1]:8000");
        assert_eq!(ok("https://[2001:DB8::1]").authority(), "[2001:db8::1]");
        assert_eq!(ok("https://[::1]").to_string(), "https://[::1]");
    }

    #[test]
    fn rejects() {
        assert_eq!(
            err("ftp://x"),
            "expected http:// or https:// URL, got \"ftp://x\""
        );
        assert!(err("127.0.0.1:8000").starts_with("expected http:// or https://"));
        assert!(err("http://").starts_with("missing host"));
        assert!(err("http:///v1").starts_with("missing host"));
        assert!(err("http://:80").starts_with("missing host"));
        assert!(err("http://h:/v1").starts_with("invalid port"));
        assert!(err("http://h:0").starts_with("invalid port"));
        assert!(err("http://h:65536").starts_with("invalid port"));
        assert!(err("http://h:+80").starts_with("invalid port"));
        assert!(err("http://h?x=1").starts_with("must not contain a query"));
        assert!(err("http://h/v1?x=1").starts_with("must not contain a query"));
        assert!(err("http://h/v1#frag").starts_with("must not contain a query"));
        assert!(err("http://a b/").starts_with("invalid host"));
        assert!(err("http://-a.com").starts_with("invalid host"));
        assert!(err("http://a..com").starts_with("invalid host"));
        assert!(err("http://1.2.3").starts_with("invalid IPv4"));
        assert!(err("http://256.1.1.1").starts_with("invalid IPv4"));
        assert!(err("http://[::1").starts_with("unclosed"));
        assert!(err("http://[zz]").starts_with("invalid IPv6"));
        assert!(err("http://[::1]x").starts_with("unexpected text"));
        assert!(err("http://::1/").starts_with("invalid host"));
        assert!(err("http://h/a b").starts_with("invalid character ' '"));
        assert!(err("http://h/%zz").starts_with("invalid percent-escape"));
    }

    #[test]
    fn userinfo_is_rejected_without_echo() {
        let message = err("https://user:hunter2@api.example.com/v1");
        assert!(message.contains("user info"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
