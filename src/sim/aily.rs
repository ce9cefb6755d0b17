//! Simulated Aily routes (§7 of the protocol notes): sessions, messages and
//! runs of an AI agent that answers `Echo: <prompt>`.
//!
//! Routes, by fault name:
//! - `aily_create_session`: `POST /open-apis/aily/v1/sessions`
//! - `aily_post_message`: `POST .../sessions/{id}/messages`
//! - `aily_list_messages`: `GET .../sessions/{id}/messages`
//! - `aily_start_run`: `POST .../sessions/{id}/runs`
//! - `aily_get_run`: `GET .../sessions/{id}/runs/{run_id}`
//!
//! Callers authenticate with a user access token (or a tenant token); a
//! user token must carry the route's scope or is refused with 99991679
//! (each API's doc page lists its scope under 权限要求, see
//! [`crate::lark::aily_api::scopes`]; larksuite/cli files 99991679 as the
//! user not having granted a scope, `internal/output/lark_errors.go`). A tenant
//! token stands for the app, whose enabled scopes are not simulated. A
//! session is visible only to whoever created it. A run answers the latest
//! user message not yet answered. It reports `IN_PROGRESS` until it has been
//! polled [`AilyState::set_polls_to_complete`] times (default 2), then
//! `COMPLETED` with the assistant's reply listed among the session's
//! messages, or `FAILED` if a test [queued a failure](AilyState::fail_next_run).
//! Every call's bearer token is kept, so tests can check whose token an
//! AI call used.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::{web, HttpRequest};
use serde_json::{json, Value};

use super::open_api::{
    bearer, enter, json_body, ok, optional, query_map, required, Answer, Reject,
};
use super::state::lock;
use super::SimState;
use crate::lark::aily_api::scopes::{
    MESSAGE_READ, MESSAGE_WRITE, RUN_READ, RUN_WRITE, SESSION_WRITE,
};
use crate::lark::codes;

/// Polls a run takes to finish unless a test changes it.
pub const DEFAULT_POLLS_TO_COMPLETE: u32 = 2;
/// Content types the simulated agent accepts.
const CONTENT_TYPES: [&str; 2] = ["MDX", "TEXT"];
const DEFAULT_PAGE_SIZE: usize = 20;

/// One Aily call and the bearer token it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AilyCall {
    pub route: &'static str,
    pub bearer: Option<String>,
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    session_id: String,
    run_id: Option<String>,
    idempotent_id: Option<String>,
    content_type: String,
    content: String,
    from_assistant: bool,
    sender_id: String,
    created_at: String,
}

impl Message {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "session_id": self.session_id,
            "run_id": self.run_id.clone().unwrap_or_default(),
            "content_type": self.content_type,
            "content": self.content,
            "plain_text": self.content,
            "files": [],
            "sender": {
                "entity_id": self.sender_id,
                "identity_provider": if self.from_assistant { "AILY" } else { "FEISHU" },
                "sender_type": if self.from_assistant { "ASSISTANT" } else { "USER" },
                "aily_id": "",
            },
            "created_at": self.created_at,
            "status": "COMPLETED",
        })
    }
}

struct Session {
    id: String,
    owner: String,
    created_at: String,
    messages: Vec<Message>,
}

struct Run {
    id: String,
    session_id: String,
    app_id: String,
    status: &'static str,
    polls: u32,
    prompt: String,
    failure: Option<(String, String)>,
    error: Option<(String, String)>,
    created_at: String,
    ended_at: Option<String>,
}

impl Run {
    fn to_json(&self) -> Value {
        let mut run = json!({
            "id": self.id,
            "session_id": self.session_id,
            "app_id": self.app_id,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.created_at,
            "ended_at": self.ended_at.clone().unwrap_or_default(),
        });
        if let Some((code, message)) = &self.error {
            run["error"] = json!({"code": code, "message": message});
        }
        run
    }
}

struct Inner {
    sessions: HashMap<String, Session>,
    runs: HashMap<String, Run>,
    polls_to_complete: u32,
    next_failure: Option<(String, String)>,
    calls: Vec<AilyCall>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            sessions: HashMap::new(),
            runs: HashMap::new(),
            polls_to_complete: DEFAULT_POLLS_TO_COMPLETE,
            next_failure: None,
            calls: Vec::new(),
        }
    }
}

/// The simulated agent's sessions and runs.
#[derive(Default)]
pub struct AilyState {
    inner: Mutex<Inner>,
}

impl AilyState {
    /// Runs finish on their `polls`-th `GET`; 0 finishes them at start.
    pub fn set_polls_to_complete(&self, polls: u32) {
        lock(&self.inner).polls_to_complete = polls;
    }

    /// The next run started ends `FAILED` with this error.
    pub fn fail_next_run(&self, code: &str, message: &str) {
        lock(&self.inner).next_failure = Some((code.to_owned(), message.to_owned()));
    }

    /// Every Aily call so far, with its bearer token.
    pub fn calls(&self) -> Vec<AilyCall> {
        lock(&self.inner).calls.clone()
    }

    /// How many sessions were created.
    pub fn session_count(&self) -> usize {
        lock(&self.inner).sessions.len()
    }
}

/// Register the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    const SESSION: &str = "/open-apis/aily/v1/sessions/{session_id}";
    cfg.route(
        "/open-apis/aily/v1/sessions",
        web::post().to(create_session),
    )
    .route(&format!("{SESSION}/messages"), web::post().to(post_message))
    .route(&format!("{SESSION}/messages"), web::get().to(list_messages))
    .route(&format!("{SESSION}/runs"), web::post().to(start_run))
    .route(
        &format!("{SESSION}/runs/{{run_id}}"),
        web::get().to(get_run),
    );
}

/// Record the call's bearer and work out who is calling: the user of a
/// user token, or `tenant` for a tenant token.
fn caller(
    state: &SimState,
    route: &'static str,
    scope: &str,
    req: &HttpRequest,
) -> Result<String, Reject> {
    let token = bearer(req).ok().map(str::to_owned);
    lock(&state.open_api.aily.inner).calls.push(AilyCall {
        route,
        bearer: token.clone(),
    });
    let token = bearer(req)?;
    if state.open_api.is_valid_tenant_token(token) {
        return Ok("tenant".to_owned());
    }
    state.open_api.oauth.authenticate_for(token, scope)
}

fn not_found(what: &str) -> Reject {
    Reject::bad(codes::AILY_NOT_FOUND, format!("{what} not found"))
}

/// The caller's session, or "not found" (others' sessions are invisible).
fn session_of<'a>(
    sessions: &'a mut HashMap<String, Session>,
    session_id: &str,
    who: &str,
) -> Result<&'a mut Session, Reject> {
    sessions
        .get_mut(session_id)
        .filter(|s| s.owner == who)
        .ok_or_else(|| not_found("session"))
}

/// Route `aily_create_session`.
async fn create_session(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> Answer {
    if let Some(r) = enter(&state, "aily_create_session", &req, &body).await {
        return Ok(r);
    }
    let who = caller(&state, "aily_create_session", SESSION_WRITE, &req)?;
    let body = json_body(&req, &body)?;
    let session = Session {
        id: format!("session_{}", uuid::Uuid::new_v4().simple()),
        owner: who,
        created_at: super::open_api::now_ms(),
        messages: Vec::new(),
    };
    let answer = json!({"session": {
        "id": session.id,
        "created_at": session.created_at,
        "modified_at": session.created_at,
        "created_by": session.owner,
        "channel_context": optional(&body, "channel_context").unwrap_or_default(),
        "metadata": optional(&body, "metadata").unwrap_or_default(),
    }});
    lock(&state.open_api.aily.inner)
        .sessions
        .insert(session.id.clone(), session);
    Ok(ok(answer))
}

/// Route `aily_post_message`.
async fn post_message(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Answer {
    if let Some(r) = enter(&state, "aily_post_message", &req, &body).await {
        return Ok(r);
    }
    let who = caller(&state, "aily_post_message", MESSAGE_WRITE, &req)?;
    let body = json_body(&req, &body)?;
    let idempotent_id = required(&body, "idempotent_id")?;
    let content_type = required(&body, "content_type")?;
    if !CONTENT_TYPES.contains(&content_type) {
        return Err(Reject::field(format!(
            "content_type `{content_type}` is not supported"
        )));
    }
    let content = required(&body, "content")?;
    let mut inner = lock(&state.open_api.aily.inner);
    let session = session_of(&mut inner.sessions, &path, &who)?;
    if let Some(earlier) = session
        .messages
        .iter()
        .find(|m| m.idempotent_id.as_deref() == Some(idempotent_id))
    {
        return Ok(ok(json!({"message": earlier.to_json()})));
    }
    let message = Message {
        id: format!("message_{}", uuid::Uuid::new_v4().simple()),
        session_id: session.id.clone(),
        run_id: None,
        idempotent_id: Some(idempotent_id.to_owned()),
        content_type: content_type.to_owned(),
        content: content.to_owned(),
        from_assistant: false,
        sender_id: who,
        created_at: super::open_api::now_ms(),
    };
    let answer = json!({"message": message.to_json()});
    session.messages.push(message);
    Ok(ok(answer))
}

/// Route `aily_list_messages`: honours `run_id`, `page_size`, `page_token`.
async fn list_messages(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<SimState>,
) -> Answer {
    if let Some(r) = enter(&state, "aily_list_messages", &req, &[]).await {
        return Ok(r);
    }
    let who = caller(&state, "aily_list_messages", MESSAGE_READ, &req)?;
    let query = query_map(&req);
    let page_size = match query.get("page_size") {
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| Reject::field("page_size must be 1..=100"))?,
        None => DEFAULT_PAGE_SIZE,
    };
    let start = match query.get("page_token") {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| Reject::field("bad page_token"))?,
        None => 0,
    };
    let mut inner = lock(&state.open_api.aily.inner);
    let session = session_of(&mut inner.sessions, &path, &who)?;
    let selected: Vec<&Message> = session
        .messages
        .iter()
        .filter(|m| match query.get("run_id") {
            Some(run) => m.run_id.as_ref() == Some(run),
            None => true,
        })
        .collect();
    let end = (start + page_size).min(selected.len());
    let page: Vec<Value> = selected
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|m| m.to_json())
        .collect();
    let has_more = end < selected.len();
    Ok(ok(json!({
        "messages": page,
        "has_more": has_more,
        "page_token": if has_more { end.to_string() } else { String::new() },
    })))
}

/// Route `aily_start_run`.
async fn start_run(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> Answer {
    if let Some(r) = enter(&state, "aily_start_run", &req, &body).await {
        return Ok(r);
    }
    let who = caller(&state, "aily_start_run", RUN_WRITE, &req)?;
    let body = json_body(&req, &body)?;
    let app_id = required(&body, "app_id")?.to_owned();
    let run_id = format!("run_{}", uuid::Uuid::new_v4().simple());
    let mut guard = lock(&state.open_api.aily.inner);
    let inner = &mut *guard;
    let session = session_of(&mut inner.sessions, &path, &who)?;
    let prompt = session
        .messages
        .iter_mut()
        .rev()
        .find(|m| !m.from_assistant && m.run_id.is_none())
        .ok_or_else(|| Reject::field("the session has no message to answer"))?;
    prompt.run_id = Some(run_id.clone());
    let mut run = Run {
        id: run_id.clone(),
        session_id: session.id.clone(),
        app_id,
        status: "IN_PROGRESS",
        polls: 0,
        prompt: prompt.content.clone(),
        failure: inner.next_failure.take(),
        error: None,
        created_at: super::open_api::now_ms(),
        ended_at: None,
    };
    if inner.polls_to_complete == 0 {
        finish(session, &mut run);
    }
    let answer = json!({"run": run.to_json()});
    inner.runs.insert(run_id, run);
    Ok(ok(answer))
}

/// Route `aily_get_run`: each call is one poll.
async fn get_run(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<SimState>,
) -> Answer {
    if let Some(r) = enter(&state, "aily_get_run", &req, &[]).await {
        return Ok(r);
    }
    let who = caller(&state, "aily_get_run", RUN_READ, &req)?;
    let (session_id, run_id) = path.into_inner();
    let mut guard = lock(&state.open_api.aily.inner);
    let inner = &mut *guard;
    let polls_to_complete = inner.polls_to_complete;
    let session = session_of(&mut inner.sessions, &session_id, &who)?;
    let run = inner
        .runs
        .get_mut(&run_id)
        .filter(|r| r.session_id == session_id)
        .ok_or_else(|| not_found("run"))?;
    run.polls += 1;
    if run.ended_at.is_none() && run.polls >= polls_to_complete {
        finish(session, run);
    }
    Ok(ok(json!({"run": run.to_json()})))
}

/// End a run: failed if a failure was queued for it, else completed with
/// the assistant's echo added to the session.
fn finish(session: &mut Session, run: &mut Run) {
    let now = super::open_api::now_ms();
    match run.failure.take() {
        Some(error) => {
            run.status = "FAILED";
            run.error = Some(error);
        }
        None => {
            run.status = "COMPLETED";
            session.messages.push(Message {
                id: format!("message_{}", uuid::Uuid::new_v4().simple()),
                session_id: session.id.clone(),
                run_id: Some(run.id.clone()),
                idempotent_id: None,
                content_type: "MDX".to_owned(),
                content: format!("Echo: {}", run.prompt),
                from_assistant: true,
                sender_id: run.app_id.clone(),
                created_at: now.clone(),
            });
        }
    }
    run.ended_at = Some(now);
}
