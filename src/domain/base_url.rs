//! `BaseUrl`: an origin the service may send credentials to.
//!
//! Plain `http://` is accepted only for loopback hosts (the simulator and
//! local fakes); everything else must be `https://`, because tokens and app
//! secrets travel in these requests.

use std::fmt;

use url::{Host, Url};

/// Why a base URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BaseUrlError {
    #[error("`{0}` is not a URL")]
    Invalid(String),
    #[error(
        "`{0}` must use https:// (plain http:// is allowed only for 127.0.0.1, ::1 and localhost)"
    )]
    InsecureScheme(String),
    #[error("`{0}` has no host")]
    NoHost(String),
}

/// A parsed `scheme://host[:port]` with no trailing slash, safe to join paths onto.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Parse and check a base URL. A trailing path is kept (minus its final
    /// `/`), so `https://host/prefix` works behind a path-routing proxy.
    pub fn parse(raw: &str) -> Result<Self, BaseUrlError> {
        let url = Url::parse(raw.trim()).map_err(|_| BaseUrlError::Invalid(raw.to_owned()))?;
        let host = url
            .host()
            .ok_or_else(|| BaseUrlError::NoHost(raw.to_owned()))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            _ => return Err(BaseUrlError::InsecureScheme(raw.to_owned())),
        }
        let mut s = url.as_str().trim_end_matches('/').to_owned();
        if let Some(q) = s.find(['?', '#']) {
            s.truncate(q);
        }
        Ok(Self(s))
    }

    /// `base + path`; `path` starts with `/`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.0, path)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Is this host the local machine?
pub fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseUrl({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_accepted_and_normalised() {
        let b = BaseUrl::parse("https://open.feishu.cn/").unwrap();
        assert_eq!(b.as_str(), "https://open.feishu.cn");
        assert_eq!(b.join("/open-apis/x"), "https://open.feishu.cn/open-apis/x");
    }

    #[test]
    fn http_only_on_loopback() {
        assert!(BaseUrl::parse("http://127.0.0.1:8080").is_ok());
        assert!(BaseUrl::parse("http://localhost:1").is_ok());
        assert!(BaseUrl::parse("http://[::1]:9").is_ok());
        assert_eq!(
            BaseUrl::parse("http://open.feishu.cn"),
            Err(BaseUrlError::InsecureScheme("http://open.feishu.cn".into()))
        );
        assert!(BaseUrl::parse("ftp://127.0.0.1").is_err());
        assert!(BaseUrl::parse("not a url").is_err());
    }
}
