//! `ApaasClient`: `call_ai_api(user_id, prompt)` as the quickstart promises,
//! answered by an Aily agent acting as that user.
//!
//! aPaaS flows and functions take only a tenant token (§7 of the protocol
//! notes); the AI surface that accepts a user token is Aily. One call is:
//! create a session, post the prompt as a message, start a run of
//! `AILY_APP_ID` (and `AILY_SKILL_ID` when set), poll the run until it ends
//! (within `AILY_RUN_TIMEOUT_SECONDS`), read the run's reply messages.
//!
//! The token is always the calling user's own: the session registry's
//! latest completed session of that `open_id`. One that would expire before
//! the call could finish is refreshed first, through the `TokenRefresher`
//! (which claims the session, so this never races its ticks); an answer
//! that the token is invalid refreshes once and retries that request once.
//! With no usable token the answer is [`ApaasError::AuthRequired`], naming
//! the user and how to send them a card. A token refused for a scope the
//! user did not grant (99991679) is [`ApaasError::ScopeMissing`], naming
//! the scope: the session moves to `reauth_required` with that reason, and
//! with `TOKEN_REFRESH_SEND_AUTH_CARD` the user gets a new card (a refresh
//! would keep the same scopes).
//!
//! Calls run concurrently; each is counted in
//! `lark_apaas_requests_total{outcome}`. Prompts and replies are the user's
//! content and never reach a log line; their lengths do.

use std::future::Future;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::ApaasError;
use crate::auth::card_auth::{send_reauth_card, CardAuth};
use crate::auth::error::AuthError;
use crate::auth::registry::{GetUserToken, RequireReauth, SessionRegistry, UserTokens};
use crate::lark::aily_api::{assistant_reply, scopes, AilyRun, RunStatus};
use crate::lark::client::{LarkClient, LarkError};
use crate::metrics::APAAS_REQUESTS;
use crate::refresh::token_refresher::{
    RefreshError, RefreshReason, RefreshUserToken, TokenRefresher,
};
use crate::supervise::{Lifecycle, Managed};

pub const NAME: &str = "apaas_client";

/// A token must outlive the call by this much beyond the run timeout, or
/// it is refreshed before the call starts.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);
/// The longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 32 * 1024;

/// Ask the AI as `user_id` (an `open_id`, `ou_…`).
#[derive(Debug, Message)]
#[rtype(result = "Result<AiResult, ApaasError>")]
pub struct CallAiApi {
    pub user_id: String,
    pub prompt: String,
}

/// The AI's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AiResult {
    /// The assistant's reply.
    pub response: String,
    pub usage: AiUsage,
    /// The Aily run that answered.
    pub run_id: String,
    /// The Aily session the prompt was posted to.
    pub session_id: String,
}

/// What the call cost. Aily reports no token counts, so these are the
/// measures the service has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AiUsage {
    pub prompt_chars: usize,
    pub response_chars: usize,
    /// Polls of the run before it ended.
    pub polls: u32,
    pub duration_ms: u64,
}

/// The Aily app the calls run, from `AILY_*`.
#[derive(Debug, Clone)]
pub struct AilyConfig {
    pub app_id: Option<String>,
    pub skill_id: Option<String>,
    pub run_timeout: Duration,
    pub poll_interval: Duration,
}

pub struct ApaasClient {
    call: Call,
    in_flight: u64,
    lifecycle: Lifecycle,
}

impl ApaasClient {
    /// `card_auth` is given when a user whose token lacks a scope should
    /// get a new authorization card (`TOKEN_REFRESH_SEND_AUTH_CARD`).
    pub fn new(
        config: AilyConfig,
        lark: LarkClient,
        registry: Addr<SessionRegistry>,
        refresher: Addr<TokenRefresher>,
        card_auth: Option<Addr<CardAuth>>,
    ) -> Self {
        Self {
            call: Call {
                config,
                lark,
                registry,
                refresher,
                card_auth,
            },
            in_flight: 0,
            lifecycle: Lifecycle::new(NAME),
        }
    }
}

impl Managed for ApaasClient {
    const NAME: &'static str = NAME;

    fn on_start(&mut self, _: &mut Context<Self>) {}

    fn in_flight(&self) -> u64 {
        self.in_flight
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "aily_app_id": self.call.config.app_id,
            "aily_skill_id": self.call.config.skill_id,
        })
    }
}

crate::managed_actor!(ApaasClient);

impl Handler<CallAiApi> for ApaasClient {
    type Result = ResponseActFuture<Self, Result<AiResult, ApaasError>>;

    fn handle(&mut self, msg: CallAiApi, _: &mut Context<Self>) -> Self::Result {
        self.in_flight += 1;
        let call = self.call.clone();
        let user_id = msg.user_id.clone();
        let prompt_chars = msg.prompt.chars().count();
        Box::pin(async move { call.run(msg).await }.into_actor(self).map(
            move |result, act, _| {
                act.in_flight -= 1;
                let outcome = match &result {
                    Ok(r) => {
                        tracing::info!(%user_id, run_id = %r.run_id, polls = r.usage.polls, duration_ms = r.usage.duration_ms, prompt_chars, response_chars = r.usage.response_chars, "AI call answered");
                        "ok"
                    }
                    Err(e) => {
                        tracing::warn!(%user_id, prompt_chars, error = %e, "AI call failed");
                        e.outcome()
                    }
                };
                metrics::counter!(APAAS_REQUESTS, "outcome" => outcome).increment(1);
                result
            },
        ))
    }
}

/// What a call needs; each call takes its own clone, so calls run
/// concurrently and borrow nothing from the actor while they wait.
#[derive(Clone)]
struct Call {
    config: AilyConfig,
    lark: LarkClient,
    registry: Addr<SessionRegistry>,
    refresher: Addr<TokenRefresher>,
    card_auth: Option<Addr<CardAuth>>,
}

impl Call {
    async fn run(self, msg: CallAiApi) -> Result<AiResult, ApaasError> {
        let CallAiApi { user_id, prompt } = msg;
        check_input(&user_id, &prompt)?;
        let app_id = self
            .config
            .app_id
            .clone()
            .ok_or(ApaasError::NotConfigured)?;
        let timeout = self.config.run_timeout;
        let mut run_id = None;
        let mut session_id = None;
        let answered = tokio::time::timeout(
            timeout,
            self.ask(&user_id, &prompt, &app_id, &mut run_id, &mut session_id),
        )
        .await;
        let result = match answered {
            Ok(result) => result,
            Err(_) => Err(ApaasError::Timeout {
                run_id,
                after: timeout,
            }),
        };
        if let (Err(ApaasError::ScopeMissing { scope, .. }), Some(session_id)) =
            (&result, session_id)
        {
            self.require_reauth(&user_id, session_id, scope).await;
        }
        result
    }

    /// The user's session can no longer serve AI calls: mark it, and send a
    /// new card when configured. The call's own answer does not wait on
    /// the card, and a failure to mark is logged, not returned: the caller
    /// is told about the scope either way.
    async fn require_reauth(&self, user_id: &str, session_id: String, scope: &str) {
        let reason = format!("the user has not granted the scope {scope}; authorize again");
        let marked = self
            .registry
            .send(RequireReauth {
                session_id: session_id.clone(),
                reason: reason.clone(),
            })
            .await;
        match marked {
            Ok(Ok(true)) => {
                if let Some(card_auth) = self.card_auth.clone() {
                    send_reauth_card(
                        card_auth,
                        user_id.to_owned(),
                        format!("The app needs the permission {scope}. Please authorize again."),
                    );
                }
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(%user_id, %session_id, error = %e, "could not mark the session reauth_required")
            }
            Err(e) => {
                tracing::warn!(%user_id, %session_id, error = %e, "could not mark the session reauth_required")
            }
        }
    }

    async fn ask(
        &self,
        user_id: &str,
        prompt: &str,
        app_id: &str,
        run_id: &mut Option<String>,
        session_id: &mut Option<String>,
    ) -> Result<AiResult, ApaasError> {
        let started = Instant::now();
        let lark = &self.lark;
        let mut bearer = self.bearer(user_id).await?;
        *session_id = Some(bearer.tokens.session_id.clone());
        let session = bearer
            .call(scopes::SESSION_WRITE, |t| async move {
                lark.create_aily_session(&t).await
            })
            .await?;
        let sid = session.id.as_str();
        let idempotent_id = uuid::Uuid::new_v4().to_string();
        let idem = idempotent_id.as_str();
        bearer
            .call(scopes::MESSAGE_WRITE, |t| async move {
                lark.post_aily_message(&t, sid, idem, prompt).await
            })
            .await?;
        let skill = self.config.skill_id.as_deref();
        let mut run = bearer
            .call(scopes::RUN_WRITE, |t| async move {
                lark.start_aily_run(&t, sid, app_id, skill).await
            })
            .await?;
        *run_id = Some(run.id.clone());
        let mut polls = 0;
        while !run.run_status().is_terminal() {
            tokio::time::sleep(self.config.poll_interval).await;
            polls += 1;
            let polled = run.id.clone();
            let rid = polled.as_str();
            run = bearer
                .call(scopes::RUN_READ, |t| async move {
                    lark.get_aily_run(&t, sid, rid).await
                })
                .await?;
        }
        ended_well(&run)?;
        let rid = run.id.as_str();
        let messages = bearer
            .call(scopes::MESSAGE_READ, |t| async move {
                lark.list_aily_messages(&t, sid, Some(rid)).await
            })
            .await?;
        let response = assistant_reply(&messages).ok_or_else(|| ApaasError::NoReply {
            run_id: run.id.clone(),
        })?;
        Ok(AiResult {
            usage: AiUsage {
                prompt_chars: prompt.chars().count(),
                response_chars: response.chars().count(),
                polls,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
            response,
            run_id: run.id,
            session_id: session.id,
        })
    }

    /// The user's token, refreshed first if it would expire during the call.
    async fn bearer<'a>(&'a self, user_id: &'a str) -> Result<UserBearer<'a>, ApaasError> {
        let auth_required = |reason: &str| ApaasError::AuthRequired {
            user_id: user_id.to_owned(),
            reason: reason.to_owned(),
        };
        let tokens = self
            .registry
            .send(GetUserToken {
                open_id: user_id.to_owned(),
            })
            .await?
            .map_err(|e| match e {
                AuthError::Db(_) | AuthError::Mailbox(_) => ApaasError::Unavailable(e.to_string()),
                AuthError::Unreadable { reason, .. } => auth_required(&reason),
                other => ApaasError::Unavailable(format!("cannot read the user's token: {other}")),
            })?
            .ok_or_else(|| auth_required("no completed authorization"))?;
        let needed = self.config.run_timeout + TOKEN_MARGIN;
        let now = crate::db::now();
        let lasts = |t: &UserTokens, d: Duration| {
            t.token_expires_at
                .is_none_or(|at| at > crate::db::after(now, d))
        };
        let tokens = if lasts(&tokens, needed) {
            tokens
        } else {
            let refreshed = self
                .refresher
                .send(RefreshUserToken {
                    session_id: tokens.session_id.clone(),
                    open_id: user_id.to_owned(),
                    reason: RefreshReason::ExpiresWithin(needed),
                })
                .await?;
            match refreshed {
                Ok(t) => t,
                // Not refreshed now, but still good for a while: use it.
                Err(RefreshError::Unavailable(reason)) if lasts(&tokens, TOKEN_MARGIN) => {
                    tracing::warn!(%user_id, %reason, "token not refreshed before the AI call; using the current one");
                    tokens
                }
                Err(e) => return Err(refresh_failed(user_id, e)),
            }
        };
        Ok(UserBearer {
            refresher: &self.refresher,
            user_id,
            tokens,
            refreshed: false,
        })
    }
}

/// The user's token for one call, refreshed at most once.
struct UserBearer<'a> {
    refresher: &'a Addr<TokenRefresher>,
    user_id: &'a str,
    tokens: UserTokens,
    refreshed: bool,
}

impl UserBearer<'_> {
    /// Make `request`, which needs `scope`, with the token; if the platform
    /// calls the token invalid, refresh it (once per AI call) and make it
    /// once more.
    async fn call<T, F, Fut>(&mut self, scope: &str, request: F) -> Result<T, ApaasError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, LarkError>>,
    {
        let refused = match request(self.tokens.access_token.clone()).await {
            Err(e) if e.is_token_invalid() => e,
            other => return self.scope_checked(scope, other),
        };
        if self.refreshed {
            return Err(self.auth_required(&refused));
        }
        self.refreshed = true;
        tracing::info!(user_id = %self.user_id, error = %refused, "user token refused; refreshing it once");
        self.tokens = self
            .refresher
            .send(RefreshUserToken {
                session_id: self.tokens.session_id.clone(),
                open_id: self.user_id.to_owned(),
                reason: RefreshReason::Refused(self.tokens.access_token.clone()),
            })
            .await?
            .map_err(|e| refresh_failed(self.user_id, e))?;
        match request(self.tokens.access_token.clone()).await {
            Err(e) if e.is_token_invalid() => Err(self.auth_required(&e)),
            other => self.scope_checked(scope, other),
        }
    }

    /// A 99991679 becomes [`ApaasError::ScopeMissing`], naming the scope
    /// the platform named, or else the one this request is documented to
    /// need.
    fn scope_checked<T>(&self, scope: &str, answer: Result<T, LarkError>) -> Result<T, ApaasError> {
        match answer {
            Err(LarkError::ScopeNotGranted { scopes, .. }) => Err(ApaasError::ScopeMissing {
                user_id: self.user_id.to_owned(),
                scope: if scopes.is_empty() {
                    scope.to_owned()
                } else {
                    scopes.join(" ")
                },
            }),
            other => Ok(other?),
        }
    }

    fn auth_required(&self, e: &LarkError) -> ApaasError {
        ApaasError::AuthRequired {
            user_id: self.user_id.to_owned(),
            reason: format!("the platform refused the refreshed token: {e}"),
        }
    }
}

fn refresh_failed(user_id: &str, e: RefreshError) -> ApaasError {
    match e {
        RefreshError::AuthRequired { reason, .. } => ApaasError::AuthRequired {
            user_id: user_id.to_owned(),
            reason,
        },
        RefreshError::Unavailable(reason) => ApaasError::TokenUnavailable(reason),
        other => ApaasError::Unavailable(other.to_string()),
    }
}

/// A run that ended other than `COMPLETED` is a failed call.
fn ended_well(run: &AilyRun) -> Result<(), ApaasError> {
    if run.run_status() == RunStatus::Completed {
        return Ok(());
    }
    let error = run.error.as_ref();
    Err(ApaasError::RunFailed {
        run_id: run.id.clone(),
        status: run.status.clone(),
        code: error.and_then(|e| e.code.clone()),
        message: error
            .and_then(|e| e.message.clone())
            .unwrap_or_else(|| "the run gave no reason".into()),
    })
}

fn check_input(user_id: &str, prompt: &str) -> Result<(), ApaasError> {
    let user_id = user_id.trim();
    if user_id.is_empty() || user_id.len() > 128 || user_id.chars().any(char::is_whitespace) {
        return Err(ApaasError::BadInput(
            "user_id must be the user's open_id (ou_…)".into(),
        ));
    }
    if prompt.trim().is_empty() {
        return Err(ApaasError::BadInput("the prompt is empty".into()));
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(ApaasError::BadInput(format!(
            "the prompt has {chars} characters; at most {MAX_PROMPT_CHARS} are accepted"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: &str, error: Option<(&str, &str)>) -> AilyRun {
        serde_json::from_value(serde_json::json!({
            "id": "run_1",
            "status": status,
            "error": error.map(|(c, m)| serde_json::json!({"code": c, "message": m})),
        }))
        .unwrap()
    }

    #[test]
    fn only_a_completed_run_is_an_answer() {
        assert!(ended_well(&run("COMPLETED", None)).is_ok());
        let err = ended_well(&run("FAILED", Some(("model_overloaded", "try later")))).unwrap_err();
        assert_eq!(err.outcome(), "run_failed");
        let text = err.to_string();
        assert!(
            text.contains("run_1") && text.contains("FAILED") && text.contains("model_overloaded"),
            "{text}"
        );
        assert!(ended_well(&run("CANCELLED", None)).is_err());
    }

    #[test]
    fn bad_input_is_refused_before_any_call() {
        for (user, prompt) in [("", "hi"), ("ou 1", "hi"), ("ou_1", "  ")] {
            assert!(
                matches!(check_input(user, prompt), Err(ApaasError::BadInput(_))),
                "{user:?} {prompt:?}"
            );
        }
        assert!(check_input("ou_1", &"x".repeat(MAX_PROMPT_CHARS + 1)).is_err());
        assert!(check_input("ou_1", "What is 2+2?").is_ok());
    }

    #[test]
    fn auth_required_names_the_user_and_the_fix() {
        let text = ApaasError::AuthRequired {
            user_id: "ou_x".into(),
            reason: "no completed authorization".into(),
        }
        .to_string();
        assert!(
            text.contains("ou_x") && text.contains("auth card"),
            "{text}"
        );
    }
}
