//! The token check `auth status` runs: one JSON-RPC `tools/list` call to
//! `https://{host}/mcp_server/v1`. A local token can be revoked or expired
//! server-side, so only the server can say whether it still works.

use std::time::Duration;

use serde_json::json;

use super::error::Step;
use super::host::DeviceHost;
use super::wire::DeviceClient;

/// The MCP endpoint on every host.
pub const MCP_PATH: &str = "/mcp_server/v1";
/// Sent as `User-Agent`; servers recognise the CLI by it.
pub const MCP_USER_AGENT: &str = "meegle-cli";
/// The check is a preflight for scripts, so it must not hang.
pub const MCP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpCheck {
    Accepted,
    /// HTTP 401.
    Rejected,
    /// Transport failure, another status, or an unusable answer; the text
    /// says which.
    Unreachable(String),
}

impl DeviceClient {
    /// Ask the server whether `token` is accepted.
    pub async fn check_mcp(&self, host: &DeviceHost, token: &str) -> McpCheck {
        let request = self
            .http
            .post(host.base_url().join(MCP_PATH))
            .timeout(MCP_TIMEOUT)
            .header("user-agent", MCP_USER_AGENT)
            .bearer_auth(token)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}));
        let reply = match self.send(Step::McpCheck, request).await {
            Ok(reply) => reply,
            Err(e) => return McpCheck::Unreachable(e.to_string()),
        };
        match reply.status {
            200 => {}
            401 => return McpCheck::Rejected,
            other => return McpCheck::Unreachable(format!("server returned error ({other})")),
        }
        let doc = match reply.json_object(Step::McpCheck) {
            Ok(doc) => doc,
            Err(e) => return McpCheck::Unreachable(e.to_string()),
        };
        if let Some(error) = doc.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("JSON-RPC error");
            return McpCheck::Unreachable(format!("server answered a JSON-RPC error: {message}"));
        }
        if doc.get("result").is_some_and(|r| r.is_object()) {
            McpCheck::Accepted
        } else {
            McpCheck::Unreachable("the MCP answer has no `result` object".into())
        }
    }
}
