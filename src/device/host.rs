//! `DeviceHost`: the Feishu Project / Meegle host a profile logs in to,
//! normalised to `host[:port]` as the profile stores it.
//!
//! The scheme is not stored, so it is derived: `https://` for every host
//! except loopback ones (`127.0.0.0/8`, `::1`, `localhost`), which get plain
//! `http://`. Loopback only ever means a local test double, and keeping the
//! stored form scheme-less matches what other clients of the same profile
//! expect. A user who writes `http://` in front of a non-loopback host is
//! refused rather than silently upgraded, so a typo cannot send a token in
//! the clear.

use std::fmt;

use url::Url;

use super::error::DeviceError;
use crate::domain::base_url::is_loopback;
use crate::domain::BaseUrl;

/// A validated `host[:port]`.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceHost {
    host: String,
    base: BaseUrl,
}

impl DeviceHost {
    /// Accept `host`, `host:port`, or a URL (`https://host/any/path`),
    /// keeping only `host[:port]`.
    pub fn parse(raw: &str) -> Result<Self, DeviceError> {
        let trimmed = raw.trim();
        let invalid =
            |why: &str| DeviceError::InvalidOption(format!("invalid host `{trimmed}`: {why}"));
        if trimmed.is_empty() {
            return Err(invalid("it is empty"));
        }
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("https://{trimmed}")
        };
        let url = Url::parse(&with_scheme).map_err(|e| invalid(&e.to_string()))?;
        let host = url.host().ok_or_else(|| invalid("it names no host"))?;
        let loopback = is_loopback(&host);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(DeviceError::InsecureHost(trimmed.to_owned())),
            other => return Err(invalid(&format!("unsupported scheme `{other}`"))),
        }
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let scheme = if loopback { "http" } else { "https" };
        let base =
            BaseUrl::parse(&format!("{scheme}://{host}")).map_err(|e| invalid(&e.to_string()))?;
        Ok(Self { host, base })
    }

    /// `host[:port]`, as stored and printed.
    pub fn as_str(&self) -> &str {
        &self.host
    }

    /// The origin requests go to; see the module docs for the scheme.
    pub fn base_url(&self) -> &BaseUrl {
        &self.base
    }
}

impl fmt::Display for DeviceHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)
    }
}

impl fmt::Debug for DeviceHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceHost({})", self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> String {
        DeviceHost::parse(raw).unwrap().as_str().to_owned()
    }

    #[test]
    fn hosts_are_normalised_to_host_and_port() {
        assert_eq!(norm("project.feishu.cn"), "project.feishu.cn");
        assert_eq!(
            norm("  https://project.feishu.cn/some/path?x=1 "),
            "project.feishu.cn"
        );
        assert_eq!(norm("https://meegle.com:8443/"), "meegle.com:8443");
        assert_eq!(norm("https://meegle.com:443"), "meegle.com");
        assert_eq!(norm("Project.Feishu.CN"), "project.feishu.cn");
        assert_eq!(norm("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(norm("http://[::1]:9"), "[::1]:9");
    }

    #[test]
    fn loopback_hosts_use_http_and_others_https() {
        let h = DeviceHost::parse("127.0.0.1:8080").unwrap();
        assert_eq!(h.base_url().as_str(), "http://127.0.0.1:8080");
        let h = DeviceHost::parse("http://localhost:1").unwrap();
        assert_eq!(h.base_url().as_str(), "http://localhost:1");
        let h = DeviceHost::parse("project.feishu.cn").unwrap();
        assert_eq!(h.base_url().as_str(), "https://project.feishu.cn");
    }

    #[test]
    fn plain_http_to_a_remote_host_is_refused() {
        let e = DeviceHost::parse("http://project.feishu.cn").unwrap_err();
        assert_eq!(e.code(), "INSECURE_HOST");
        assert_eq!(DeviceHost::parse("").unwrap_err().code(), "INVALID_OPTION");
        assert_eq!(
            DeviceHost::parse("ftp://x.example").unwrap_err().code(),
            "INVALID_OPTION"
        );
        assert_eq!(
            DeviceHost::parse("https://").unwrap_err().code(),
            "INVALID_OPTION"
        );
    }
}
