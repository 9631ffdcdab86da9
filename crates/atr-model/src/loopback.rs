//! Whether a URL names this machine: plain `http` is tolerated only there (a JWKS URL, a
//! Subscription endpoint). Decided on the parsed host, never on the text, so that
//! `http://localhost.evil.example` or `http://127.0.0.1@evil.example` is not mistaken for it.

use url::{Host, Url};

/// True for `localhost`, `127.0.0.0/8` and `::1`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    fn check(text: &str) -> bool {
        is_loopback(&url::Url::parse(text).expect("url"))
    }

    #[test]
    fn only_the_parsed_host_counts() {
        assert!(check("http://127.0.0.1:8080/jwks"));
        assert!(check("http://127.9.9.9/"));
        assert!(check("http://[::1]/x"));
        assert!(check("http://LOCALHOST/x"));
        assert!(!check("http://localhost.evil.example/jwks"));
        assert!(!check("http://127.0.0.1@evil.example/jwks"));
        assert!(!check("http://127.0.0.1.evil.example/jwks"));
        assert!(!check("http://10.0.0.1/"));
    }
}
