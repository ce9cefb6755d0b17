//! Aily, the platform's AI agents (§7 of the protocol notes), called with a
//! user access token so the agent acts as that user.
//!
//! One question is: create a session, post the prompt as a message, start
//! a run, poll the run until it is terminal, then list the run's messages
//! and take the assistant's. The SDKs document no status enum, so
//! [`RunStatus`] knows the terminal ones the notes name and treats any
//! other status, known or not, as still running: a caller's deadline ends
//! a run that never settles, where a wrong "finished" would return nothing.

use serde::Deserialize;
use serde_json::json;

use super::client::{encode_component, ApiRequest, LarkClient, LarkError};
use super::de::opt_string;

/// The message content type the service posts.
pub const CONTENT_TYPE_MDX: &str = "MDX";
/// Messages asked for per page when listing: the API's default page size,
/// which every deployment accepts. A run has a handful of messages.
const PAGE_SIZE: u32 = 20;
/// A bound on pages read for one run, against a server that always says
/// `has_more`.
const MAX_PAGES: usize = 20;

const SESSIONS_PATH: &str = "/open-apis/aily/v1/sessions";

/// The scope each Aily call needs of a user token, from each API's doc page
/// (权限要求; open.feishu.cn `aily-v1/aily_session/create`,
/// `aily_session-aily_message/create` and `/list`, `aily_session-run/create`
/// and `/get`). A token without it is refused with 99991679.
pub mod scopes {
    /// `POST /open-apis/aily/v1/sessions`.
    pub const SESSION_WRITE: &str = "aily:session:write";
    /// `POST .../sessions/:id/messages`.
    pub const MESSAGE_WRITE: &str = "aily:message:write";
    /// `GET .../sessions/:id/messages`.
    pub const MESSAGE_READ: &str = "aily:message:read";
    /// `POST .../sessions/:id/runs`.
    pub const RUN_WRITE: &str = "aily:run:write";
    /// `GET .../sessions/:id/runs/:run_id`.
    pub const RUN_READ: &str = "aily:run:read";
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AilySession {
    pub id: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub created_at: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub modified_at: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AilySender {
    #[serde(default, deserialize_with = "opt_string")]
    pub entity_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub identity_provider: Option<String>,
    /// `USER` or `ASSISTANT` in practice.
    #[serde(default, deserialize_with = "opt_string")]
    pub sender_type: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub aily_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AilyMessage {
    pub id: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub session_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub run_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub content_type: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub content: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub plain_text: Option<String>,
    #[serde(default)]
    pub sender: AilySender,
    #[serde(default, deserialize_with = "opt_string")]
    pub created_at: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub status: Option<String>,
}

impl AilyMessage {
    /// Written by the agent: `ASSISTANT`, or any sender that is not the user.
    pub fn is_from_assistant(&self) -> bool {
        match self.sender.sender_type.as_deref() {
            Some(t) => !t.eq_ignore_ascii_case("USER"),
            None => false,
        }
    }

    /// The readable text: `plain_text`, else the raw `content`.
    pub fn text(&self) -> Option<&str> {
        self.plain_text.as_deref().or(self.content.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AilyRunError {
    #[serde(default, deserialize_with = "opt_string")]
    pub code: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AilyRun {
    pub id: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub session_id: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub app_id: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub created_at: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub started_at: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub ended_at: Option<String>,
    #[serde(default)]
    pub error: Option<AilyRunError>,
}

impl AilyRun {
    pub fn run_status(&self) -> RunStatus {
        RunStatus::parse(&self.status)
    }
}

/// Where a run is. Everything but the four terminal statuses is `Running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
    Expired,
}

impl RunStatus {
    /// Case-insensitive; unknown statuses are `Running` (see the module doc).
    pub fn parse(status: &str) -> Self {
        match status.trim().to_ascii_uppercase().as_str() {
            "COMPLETED" => Self::Completed,
            "FAILED" => Self::Failed,
            "CANCELLED" | "CANCELED" => Self::Cancelled,
            "EXPIRED" => Self::Expired,
            _ => Self::Running,
        }
    }

    pub fn is_terminal(self) -> bool {
        self != Self::Running
    }
}

/// The assistant's answer among a run's messages: the text of every
/// assistant message, in the order listed, blank-line separated.
pub fn assistant_reply(messages: &[AilyMessage]) -> Option<String> {
    let parts: Vec<&str> = messages
        .iter()
        .filter(|m| m.is_from_assistant())
        .filter_map(AilyMessage::text)
        .filter(|t| !t.trim().is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

#[derive(Deserialize)]
struct SessionData {
    session: AilySession,
}

#[derive(Deserialize)]
struct MessageData {
    message: AilyMessage,
}

#[derive(Deserialize)]
struct RunData {
    run: AilyRun,
}

#[derive(Deserialize)]
struct MessagePage {
    #[serde(default)]
    messages: Vec<AilyMessage>,
    #[serde(default, deserialize_with = "opt_string")]
    page_token: Option<String>,
    #[serde(default)]
    has_more: bool,
}

fn session_path(session_id: &str, rest: &str) -> String {
    format!("{SESSIONS_PATH}/{}{rest}", encode_component(session_id))
}

impl LarkClient {
    /// `POST /open-apis/aily/v1/sessions`.
    pub async fn create_aily_session(&self, user_token: &str) -> Result<AilySession, LarkError> {
        let req = ApiRequest::post(SESSIONS_PATH)
            .bearer(user_token)
            .json(json!({}));
        let d: SessionData = self.envelope(req).await?;
        Ok(d.session)
    }

    /// `POST .../sessions/:id/messages` with MDX content. `idempotent_id`
    /// makes a retried post create one message.
    pub async fn post_aily_message(
        &self,
        user_token: &str,
        session_id: &str,
        idempotent_id: &str,
        content: &str,
    ) -> Result<AilyMessage, LarkError> {
        let req = ApiRequest::post(session_path(session_id, "/messages"))
            .bearer(user_token)
            .json(json!({
                "idempotent_id": idempotent_id,
                "content_type": CONTENT_TYPE_MDX,
                "content": content,
            }));
        let d: MessageData = self.envelope(req).await?;
        Ok(d.message)
    }

    /// `POST .../sessions/:id/runs`: have the agent answer the session.
    pub async fn start_aily_run(
        &self,
        user_token: &str,
        session_id: &str,
        app_id: &str,
        skill_id: Option<&str>,
    ) -> Result<AilyRun, LarkError> {
        let mut body = json!({"app_id": app_id});
        if let Some(skill_id) = skill_id {
            body["skill_id"] = json!(skill_id);
        }
        let req = ApiRequest::post(session_path(session_id, "/runs"))
            .bearer(user_token)
            .json(body);
        let d: RunData = self.envelope(req).await?;
        Ok(d.run)
    }

    /// `GET .../sessions/:id/runs/:run_id`.
    pub async fn get_aily_run(
        &self,
        user_token: &str,
        session_id: &str,
        run_id: &str,
    ) -> Result<AilyRun, LarkError> {
        let path = session_path(session_id, &format!("/runs/{}", encode_component(run_id)));
        let d: RunData = self
            .envelope(ApiRequest::get(path).bearer(user_token))
            .await?;
        Ok(d.run)
    }

    /// `GET .../sessions/:id/messages`, every page, optionally only one run's.
    pub async fn list_aily_messages(
        &self,
        user_token: &str,
        session_id: &str,
        run_id: Option<&str>,
    ) -> Result<Vec<AilyMessage>, LarkError> {
        let mut messages = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut req = ApiRequest::get(session_path(session_id, "/messages"))
                .bearer(user_token)
                .query("page_size", PAGE_SIZE.to_string());
            if let Some(run_id) = run_id {
                req = req.query("run_id", run_id);
            }
            if let Some(token) = page_token.take() {
                req = req.query("page_token", token);
            }
            let page: MessagePage = self.envelope(req).await?;
            messages.extend(page.messages);
            match page.page_token {
                Some(next) if page.has_more => page_token = Some(next),
                _ => break,
            }
        }
        Ok(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(
        sender_type: Option<&str>,
        plain: Option<&str>,
        content: Option<&str>,
    ) -> AilyMessage {
        AilyMessage {
            id: "m".into(),
            session_id: None,
            run_id: None,
            content_type: None,
            content: content.map(str::to_owned),
            plain_text: plain.map(str::to_owned),
            sender: AilySender {
                sender_type: sender_type.map(str::to_owned),
                ..AilySender::default()
            },
            created_at: None,
            status: None,
        }
    }

    #[test]
    fn statuses_are_case_insensitive_and_unknown_ones_keep_running() {
        assert_eq!(RunStatus::parse("completed"), RunStatus::Completed);
        assert_eq!(RunStatus::parse("COMPLETED"), RunStatus::Completed);
        assert_eq!(RunStatus::parse("Failed"), RunStatus::Failed);
        assert_eq!(RunStatus::parse("CANCELED"), RunStatus::Cancelled);
        assert_eq!(RunStatus::parse("expired"), RunStatus::Expired);
        for s in ["IN_PROGRESS", "QUEUED", "SOMETHING_NEW", ""] {
            assert_eq!(RunStatus::parse(s), RunStatus::Running);
            assert!(!RunStatus::parse(s).is_terminal());
        }
        assert!(RunStatus::Failed.is_terminal());
    }

    #[test]
    fn reply_is_the_assistant_text() {
        let messages = vec![
            message(Some("USER"), Some("hi"), None),
            message(Some("ASSISTANT"), None, Some("Echo: hi")),
            message(Some("assistant"), Some("more"), Some("ignored")),
            message(None, Some("unknown sender"), None),
        ];
        assert_eq!(
            assistant_reply(&messages).as_deref(),
            Some("Echo: hi\n\nmore")
        );
        assert_eq!(assistant_reply(&messages[..1]), None);
    }

    #[test]
    fn lenient_run_decoding() {
        let run: AilyRun = serde_json::from_str(
            r#"{"id":"r1","status":"FAILED","created_at":1700000000,"error":{"code":42,"message":"boom"}}"#,
        )
        .unwrap();
        assert_eq!(run.run_status(), RunStatus::Failed);
        assert_eq!(run.created_at.as_deref(), Some("1700000000"));
        assert_eq!(run.error.unwrap().code.as_deref(), Some("42"));
    }
}
