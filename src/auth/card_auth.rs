//! `CardAuth`: authorization by card and by OAuth redirect.
//!
//! It sends the authorization card, and completes sessions from the two ways
//! a code comes back:
//! - a `card.action.trigger` callback from our Authorize button whose value
//!   carries an `authorization_code` (exchanged with the v1 OIDC endpoint,
//!   which needs no redirect URI);
//! - `GET /oauth/callback?code&state` after the button opened the authorize
//!   page, when `OAUTH_REDIRECT_URI` is set (see [`super::redirect`]).
//!
//! Codes are single-use, so a session being exchanged is kept in an
//! in-flight set: a second click meanwhile is told to wait, and a click on a
//! completed session is answered "already authorized" without spending
//! anything.

use std::collections::HashSet;
use std::sync::Arc;

use actix::prelude::*;
use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::card::{
    auth_request_card, authorized_card, failure_card, session_id_from_action, AuthCardOptions,
};
use super::error::AuthError;
use super::redirect::RedirectFlow;
use super::registry::{
    CompleteSession, CreateSession, FailSession, GetSession, SessionRegistry, SessionView,
    SetMessageId,
};
use crate::domain::{AuthMethod, Scopes, Secret, SessionState};
use crate::events::envelope::Envelope;
use crate::events::router::{HandlerError, HandlerResult};
use crate::lark::auth_api::{RedirectState, UserInfo, UserToken};
use crate::lark::client::LarkClient;
use crate::lark::im_api::ReceiveIdType;
use crate::refresh::app_token_cache::{
    with_tenant_token, with_token, AppCallError, AppTokenCache, TokenKind,
};
use crate::supervise::{Lifecycle, Managed};

pub const NAME: &str = "card_auth";

/// The event type of card clicks.
pub const CARD_ACTION: &str = "card.action.trigger";

/// What `POST /admin/auth-cards` and `send-auth-card` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuthCardSent {
    pub session_id: String,
    pub message_id: String,
    pub expires_at: NaiveDateTime,
}

/// Create a session for `open_id` and send them the card.
#[derive(Message)]
#[rtype(result = "Result<AuthCardSent, AuthError>")]
pub struct SendAuthCard {
    pub open_id: String,
    pub options: AuthCardOptions,
}

/// A `card.action.trigger` event; answers the callback response.
#[derive(Message)]
#[rtype(result = "HandlerResult")]
pub struct HandleCardAction(pub Arc<Envelope>);

/// The OAuth redirect came back with `code` and `state`.
#[derive(Message)]
#[rtype(result = "Result<SessionView, AuthError>")]
pub struct CompleteOAuth {
    pub code: String,
    pub state: RedirectState,
}

/// What the card flow needs from configuration.
#[derive(Clone)]
pub struct CardAuthConfig {
    pub app_id: String,
    pub app_secret: Secret,
    pub redirect_uri: Option<url::Url>,
    /// `OAUTH_SCOPES`, asked of every user.
    pub scopes: Scopes,
}

pub struct CardAuth {
    client: LarkClient,
    registry: Addr<SessionRegistry>,
    /// Set when `OAUTH_REDIRECT_URI` is.
    redirect: Option<RedirectFlow>,
    app_tokens: Addr<AppTokenCache>,
    exchanging: HashSet<Uuid>,
    lifecycle: Lifecycle,
}

impl CardAuth {
    pub fn new(
        config: CardAuthConfig,
        client: LarkClient,
        registry: Addr<SessionRegistry>,
        app_tokens: Addr<AppTokenCache>,
    ) -> Self {
        let redirect = config
            .redirect_uri
            .clone()
            .map(|redirect_uri| RedirectFlow {
                client: client.clone(),
                registry: registry.clone(),
                app_id: config.app_id.clone(),
                app_secret: config.app_secret.clone(),
                redirect_uri,
                scopes: config.scopes.clone(),
            });
        Self {
            client,
            registry,
            redirect,
            app_tokens,
            exchanging: HashSet::new(),
            lifecycle: Lifecycle::new(NAME),
        }
    }

    /// Exchange `code` and complete the session, off the actor; the session
    /// leaves the in-flight set when it is done either way.
    fn exchange(
        &mut self,
        session: SessionView,
        code: String,
        method: AuthMethod,
    ) -> ResponseActFuture<Self, Result<SessionView, AuthError>> {
        let session_id = match Uuid::parse_str(&session.session_id) {
            Ok(id) => id,
            Err(e) => return Box::pin(fut::ready(Err(AuthError::BadInput(e.to_string())))),
        };
        if !self.exchanging.insert(session_id) {
            return Box::pin(fut::ready(Err(AuthError::BadInput(
                "authorization is already in progress for this session".into(),
            ))));
        }
        let client = self.client.clone();
        let app_tokens = self.app_tokens.clone();
        let registry = self.registry.clone();
        let work = async move {
            tracing::debug!(session_id = %session_id, "exchanging the authorization code");
            let token = exchange_code(&client, &app_tokens, &code).await?;
            let user = client.user_info(&token.access_token).await?;
            if session
                .open_id
                .as_deref()
                .is_some_and(|expected| expected != user.open_id)
            {
                return Err(AuthError::WrongOperator);
            }
            complete(&registry, session_id, method, token, user).await
        };
        Box::pin(work.into_actor(self).map(move |result, act, _| {
            act.exchanging.remove(&session_id);
            if let Err(e) = &result {
                // Nothing was stored; the session fails with the reason
                // unless it was never ours to fail.
                if !matches!(e, AuthError::NotPending(_) | AuthError::UnknownSession(_)) {
                    act.registry.do_send(FailSession::new(session_id, e));
                }
            }
            result
        }))
    }
}

async fn exchange_code(
    client: &LarkClient,
    app_tokens: &Addr<AppTokenCache>,
    code: &str,
) -> Result<UserToken, AuthError> {
    with_token(app_tokens, TokenKind::App, |app_token| async move {
        client.exchange_code_v1(&app_token, code).await
    })
    .await
    .map_err(|e| match e {
        AppCallError::Lark(e) => AuthError::Exchange(e),
        other => AuthError::BadInput(other.to_string()),
    })
}

async fn complete(
    registry: &Addr<SessionRegistry>,
    session_id: Uuid,
    method: AuthMethod,
    token: UserToken,
    user: UserInfo,
) -> Result<SessionView, AuthError> {
    registry
        .send(CompleteSession {
            session_id,
            method,
            token,
            user,
        })
        .await?
}

impl Managed for CardAuth {
    const NAME: &'static str = NAME;

    fn on_start(&mut self, _: &mut Context<Self>) {}

    fn on_restart(&mut self) {
        self.exchanging.clear();
    }

    fn in_flight(&self) -> u64 {
        self.exchanging.len() as u64
    }
}

crate::managed_actor!(CardAuth);

impl Handler<SendAuthCard> for CardAuth {
    type Result = ResponseFuture<Result<AuthCardSent, AuthError>>;

    fn handle(&mut self, msg: SendAuthCard, _: &mut Context<Self>) -> Self::Result {
        let registry = self.registry.clone();
        let app_tokens = self.app_tokens.clone();
        let client = self.client.clone();
        let redirect = self.redirect.clone();
        Box::pin(async move {
            msg.options
                .validate()
                .map_err(|e| AuthError::BadInput(e.to_string()))?;
            if !msg.open_id.starts_with("ou_") {
                return Err(AuthError::BadInput(format!(
                    "`{}` is not an open_id (they start with `ou_`)",
                    msg.open_id
                )));
            }
            let (session, authorize_url) = match &redirect {
                Some(flow) => {
                    let (session, url) = flow.start(&msg.open_id).await?;
                    (session, Some(url))
                }
                None => {
                    let session = registry
                        .send(CreateSession {
                            open_id: Some(msg.open_id.clone()),
                            method: AuthMethod::WebsocketCard,
                        })
                        .await??;
                    (session, None)
                }
            };
            let session_id = Uuid::parse_str(&session.session_id)
                .map_err(|e| AuthError::BadInput(e.to_string()))?;
            let card = auth_request_card(session_id, &msg.options, authorize_url.as_deref());
            let sent = with_tenant_token(&app_tokens, |token| {
                let client = client.clone();
                let card = card.clone();
                let open_id = msg.open_id.clone();
                let uuid = session.session_id.clone();
                async move {
                    client
                        .send_card(&token, ReceiveIdType::OpenId, &open_id, &card, Some(&uuid))
                        .await
                }
            })
            .await;
            let sent = match sent {
                Ok(sent) => sent,
                Err(e) => {
                    let error = match e {
                        AppCallError::Lark(l) => AuthError::Platform(l),
                        other => AuthError::BadInput(other.to_string()),
                    };
                    registry.do_send(FailSession::new(session_id, &error));
                    return Err(error);
                }
            };
            registry
                .send(SetMessageId {
                    session_id,
                    message_id: sent.message_id.clone(),
                })
                .await??;
            tracing::info!(
                session_id = %session.session_id,
                message_id = %sent.message_id,
                open_id = %msg.open_id,
                "authorization card sent"
            );
            Ok(AuthCardSent {
                session_id: session.session_id,
                message_id: sent.message_id,
                expires_at: session.expires_at,
            })
        })
    }
}

/// A callback response: a toast, and optionally a replacement card.
fn callback(kind: &str, content: &str, card: Option<Value>) -> Value {
    let mut body = json!({"toast": {"type": kind, "content": content}});
    if let Some(card) = card {
        body["card"] = json!({"type": "raw", "data": card});
    }
    body
}

impl Handler<HandleCardAction> for CardAuth {
    type Result = ResponseActFuture<Self, HandlerResult>;

    fn handle(
        &mut self,
        HandleCardAction(envelope): HandleCardAction,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let event = &envelope.event;
        let value = &event["action"]["value"];
        let Some(session_id) = session_id_from_action(value) else {
            // Some other card's button: not ours to answer.
            return Box::pin(fut::ready(Ok(None)));
        };
        let operator = event["operator"]["open_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let code = authorization_code(value);
        let span = tracing::info_span!("card_auth", %session_id, operator = %operator);
        span.in_scope(|| tracing::info!("card action received"));
        if self.exchanging.contains(&session_id) {
            return Box::pin(fut::ready(Ok(Some(callback(
                "info",
                "Authorization is in progress; this takes a few seconds.",
                None,
            )))));
        }

        let registry = self.registry.clone();
        let lookup = async move { registry.send(GetSession { session_id }).await };
        Box::pin(lookup.into_actor(self).then(move |found, act, _| {
            let refuse = |kind: &str, text: &str, card: Option<Value>| -> ResponseActFuture<Self, HandlerResult> {
                Box::pin(fut::ready(Ok(Some(callback(kind, text, card)))))
            };
            let session = match found {
                Ok(Ok(Some(s))) => s,
                Ok(Ok(None)) => return refuse("error", "This authorization card is unknown; ask for a new one.", None),
                Ok(Err(e)) => return Box::pin(fut::ready(Err(HandlerError(e.to_string())))),
                Err(e) => return Box::pin(fut::ready(Err(HandlerError(e.to_string())))),
            };
            match session.state {
                SessionState::Completed => {
                    let name = session.user_name.clone().unwrap_or_default();
                    return refuse("info", &format!("Already authorized as {name}."), Some(authorized_card(&name)));
                }
                SessionState::Pending if session.expires_at > crate::db::now() => {}
                SessionState::Pending | SessionState::Expired => {
                    return refuse(
                        "error",
                        "This authorization card has expired; ask for a new one.",
                        Some(failure_card("The authorization request expired.")),
                    )
                }
                other => {
                    return refuse(
                        "error",
                        &format!("This authorization is {other}; ask for a new card."),
                        None,
                    )
                }
            }
            if session.open_id.as_deref() != Some(operator.as_str()) {
                metrics::counter!(crate::metrics::AUTH_FAILED, "reason" => "wrong_operator").increment(1);
                tracing::warn!(%session_id, %operator, "card clicked by someone other than its recipient");
                return refuse("error", "This authorization card was sent to someone else.", None);
            }
            let Some(code) = code else {
                act.registry.do_send(FailSession::new(session_id, &AuthError::NoCode));
                return refuse(
                    "error",
                    "Authorization is not set up for card clicks; ask your administrator.",
                    Some(failure_card("No authorization code arrived with the click.")),
                );
            };
            Box::pin(act.exchange(session, code, AuthMethod::WebsocketCard).map(|result, _, _| {
                Ok(Some(match result {
                    Ok(done) => {
                        let name = done.user_name.clone().unwrap_or_default();
                        callback("success", &format!("Authorized as {name}."), Some(authorized_card(&name)))
                    }
                    Err(e) => callback("error", &format!("Authorization failed: {e}"), Some(failure_card(&e.to_string()))),
                }))
            }))
        }))
    }
}

/// The code a click carries in the button's callback value (object or
/// JSON-string form): `authorization_code`, or `code`.
fn authorization_code(value: &Value) -> Option<String> {
    let parsed;
    let object = match value {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            &parsed
        }
        other => other,
    };
    ["authorization_code", "code"]
        .iter()
        .find_map(|k| object.get(*k)?.as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
}

impl Handler<CompleteOAuth> for CardAuth {
    type Result = ResponseFuture<Result<SessionView, AuthError>>;

    fn handle(&mut self, msg: CompleteOAuth, _: &mut Context<Self>) -> Self::Result {
        let Some(flow) = self.redirect.clone() else {
            return Box::pin(fut::ready(Err(AuthError::BadInput(
                "the OAuth redirect flow is off: set OAUTH_REDIRECT_URI".into(),
            ))));
        };
        Box::pin(async move { flow.complete(&msg.code, &msg.state).await })
    }
}

/// Send `open_id` a new authorization card saying `why`, in the background:
/// for a user whose authorization ended (a refresh token refused for good,
/// a scope not granted). Failures are logged; nothing waits for them.
pub fn send_reauth_card(card_auth: Addr<CardAuth>, open_id: String, why: String) {
    actix_rt::spawn(async move {
        let sent = card_auth
            .send(SendAuthCard {
                open_id: open_id.clone(),
                options: AuthCardOptions {
                    custom_message: Some(why),
                    ..AuthCardOptions::default()
                },
            })
            .await;
        match sent {
            Ok(Ok(card)) => {
                tracing::info!(%open_id, session_id = %card.session_id, "sent a new authorization card")
            }
            Ok(Err(e)) => {
                tracing::warn!(%open_id, error = %e, "could not send a new authorization card")
            }
            Err(e) => {
                tracing::warn!(%open_id, error = %e, "could not send a new authorization card: card flow unavailable")
            }
        }
    });
}

/// The event handler for `card.action.trigger`: hands the event to `CardAuth`.
pub fn card_action_handler(card_auth: Addr<CardAuth>) -> impl crate::events::router::EventHandler {
    move |envelope: Arc<Envelope>| {
        let card_auth = card_auth.clone();
        async move {
            card_auth
                .send(HandleCardAction(envelope))
                .await
                .map_err(|e| HandlerError(format!("card auth unavailable: {e}")))?
        }
    }
}
