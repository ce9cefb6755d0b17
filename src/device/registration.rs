//! RFC 7591 dynamic registration of a public client, done on every
//! `--phase init` as the reference client does: the device flow needs a
//! `client_id` and no secret.

use serde::Serialize;
use url::Url;

use super::error::{DeviceError, Step};
use super::wire::{unwrap_data, DeviceClient, Fields};

/// The grants a device-flow client asks for.
pub const GRANT_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:grant-type:device_code",
    "refresh_token",
];

/// The registration body. Field order is alphabetical, which is also the
/// order the reference client's JSON encoder writes.
#[derive(Debug, Serialize)]
struct Registration<'a> {
    client_name: &'a str,
    grant_types: [&'static str; 2],
    token_endpoint_auth_method: &'static str,
}

impl DeviceClient {
    /// Register a public client at `endpoint`; returns its `client_id`.
    pub async fn register(&self, endpoint: &Url) -> Result<String, DeviceError> {
        let name = client_name();
        let body = Registration {
            client_name: &name,
            grant_types: GRANT_TYPES,
            token_endpoint_auth_method: "none",
        };
        let reply = self
            .send(
                Step::Registration,
                self.http.post(endpoint.clone()).json(&body),
            )
            .await?;
        if reply.status != 200 && reply.status != 201 {
            return Err(DeviceError::HttpStatus {
                step: Step::Registration,
                status: reply.status,
            });
        }
        let doc = reply.json_object(Step::Registration)?;
        let f = Fields {
            step: Step::Registration,
            map: unwrap_data(&doc, &["client_id"]),
        };
        match f.opt_str("client_id")? {
            Some(id) => Ok(id.to_owned()),
            None => {
                let msg = Fields {
                    step: Step::Registration,
                    map: &doc,
                }
                .opt_str("msg")
                .ok()
                .flatten()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
                Err(DeviceError::Malformed {
                    step: Step::Registration,
                    detail: format!("missing client_id in response{msg}"),
                })
            }
        }
    }
}

/// `<user>@<hostname> (<os>/<arch>)` with Go's names for the platform, e.g.
/// `alice@build-01 (linux/amd64)`; parts that cannot be read are left out.
pub fn client_name() -> String {
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty());
    let parts: Vec<String> = user.into_iter().chain(hostname()).collect();
    let who = if parts.is_empty() {
        "lark-service".to_owned()
    } else {
        parts.join("@")
    };
    format!(
        "{who} ({}/{})",
        go_os(std::env::consts::OS),
        go_arch(std::env::consts::ARCH)
    )
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn go_os(os: &str) -> &str {
    match os {
        "macos" => "darwin",
        other => other,
    }
}

fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_names_follow_go() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_os("macos"), "darwin");
        assert_eq!(go_os("linux"), "linux");
        assert!(client_name().ends_with(')'));
    }

    #[test]
    fn the_body_matches_the_reference_client() {
        let body = Registration {
            client_name: "u@h (linux/amd64)",
            grant_types: GRANT_TYPES,
            token_endpoint_auth_method: "none",
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"client_name":"u@h (linux/amd64)","grant_types":["urn:ietf:params:oauth:grant-type:device_code","refresh_token"],"token_endpoint_auth_method":"none"}"#
        );
    }
}
