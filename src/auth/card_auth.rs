//! `CardAuth`: authorization by card, and the OAuth redirect.
//!
//! It sends the authorization card and answers its clicks. A click
//! (`card.action.trigger`) carries only the button's value, which names the
//! session, and the operator (lark-oapi
//! `event/callback/model/p2_card_action_trigger.py`); no authorization code
//! ever comes with it. So a click on a pending session's card, by its
//! recipient, starts a device code through `DeviceLogins` (the accounts
//! host's device flow, no inbound HTTP needed) and is answered, within the
//! platform's 3 s, with a card showing the user code and a button opening
//! the verification link. The session completes once the user approves
//! there. A second click while the code is live answers the same link.
//!
//! When `OAUTH_REDIRECT_URI` is set, the card's button opens the authorize
//! page instead, and `GET /oauth/callback?code&state` completes the session
//! (see [`super::redirect`]: PKCE, a hashed single-use `state`, v2 code
//! exchange).
//!
//! Whenever a session with a card ends, by any method, the registry tells
//! this actor ([`SessionEnded`]) and the card is replaced in place:
//! "Authorized as NAME", or the reason it failed or expired.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::card::{
    auth_request_card, authorized_card, device_code_card, failure_card, session_id_from_action,
    AuthCardOptions,
};
use super::card_updates::CardUpdater;
use super::device_logins::{DeviceLogins, StartCardLogin};
use super::error::AuthError;
use super::redirect::RedirectFlow;
use super::registry::{
    CreateSession, FailSession, GetSession, SessionEnded, SessionOutcome, SessionRegistry,
    SessionView, SetMessageId, WatchSessionEnds,
};
use crate::domain::{AuthMethod, Scopes, Secret, SessionState};
use crate::events::envelope::Envelope;
use crate::events::router::{HandlerError, HandlerResult};
use crate::lark::auth_api::RedirectState;
use crate::lark::client::LarkClient;
use crate::lark::im_api::ReceiveIdType;
use crate::refresh::app_token_cache::{with_tenant_token, AppCallError, AppTokenCache};
use crate::supervise::{Lifecycle, Managed};

pub const NAME: &str = "card_auth";

/// How long a click may take before it is answered "click again": inside
/// the event router's handler timeout, itself inside the platform's 3 s.
const CLICK_BUDGET: Duration = Duration::from_millis(2_200);

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
    device_logins: Addr<DeviceLogins>,
    cards: CardUpdater,
    lifecycle: Lifecycle,
}

impl CardAuth {
    pub fn new(
        config: CardAuthConfig,
        client: LarkClient,
        registry: Addr<SessionRegistry>,
        app_tokens: Addr<AppTokenCache>,
        device_logins: Addr<DeviceLogins>,
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
            cards: CardUpdater::new(client.clone(), app_tokens.clone()),
            client,
            registry,
            redirect,
            app_tokens,
            device_logins,
            lifecycle: Lifecycle::new(NAME),
        }
    }
}

impl Managed for CardAuth {
    const NAME: &'static str = NAME;

    /// The registry keeps the watcher across restarts of either actor (a
    /// supervised actor keeps its address); asking again is harmless.
    fn on_start(&mut self, ctx: &mut Context<Self>) {
        self.registry
            .do_send(WatchSessionEnds(ctx.address().recipient()));
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
        let Some(session_id) = session_id_from_action(&event["action"]["value"]) else {
            // Some other card's button: not ours to answer.
            return Box::pin(fut::ready(Ok(None)));
        };
        let operator = event["operator"]["open_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        tracing::info!(%session_id, %operator, "card action received");

        let registry = self.registry.clone();
        let device_logins = self.device_logins.clone();
        let work = async move {
            let session = match registry.send(GetSession { session_id }).await {
                Ok(Ok(Some(s))) => s,
                Ok(Ok(None)) => {
                    return Ok(callback(
                        "error",
                        "This authorization card is unknown; ask for a new one.",
                        None,
                    ))
                }
                Ok(Err(e)) => return Err(HandlerError(e.to_string())),
                Err(e) => return Err(HandlerError(e.to_string())),
            };
            if let Some(answer) = refusal(&session, &operator) {
                return Ok(answer);
            }
            let started = device_logins
                .send(StartCardLogin {
                    session_id,
                    open_id: operator,
                    message_id: session.message_id.clone(),
                    expires_at: session.expires_at,
                })
                .await
                .map_err(|e| HandlerError(format!("device logins unavailable: {e}")))?;
            Ok(match started {
                Ok(shown) => callback(
                    "info",
                    &format!(
                        "Open the link and approve; your code is {}.",
                        shown.user_code
                    ),
                    Some(device_code_card(
                        &shown.user_code,
                        &shown.verification_uri_complete,
                        shown.valid_for(),
                    )),
                ),
                Err(AuthError::InProgress) => callback(
                    "info",
                    "Your link is on its way; click again in a moment.",
                    None,
                ),
                Err(e) => callback(
                    "error",
                    &format!("Could not start the authorization ({e}); click again to retry."),
                    None,
                ),
            })
        };
        // Whatever is slow (the database, the accounts host), the click is
        // answered: a late answer is no answer, and the platform shows the
        // user an error.
        let answered = async move {
            match tokio::time::timeout(CLICK_BUDGET, work).await {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::warn!(%session_id, "card click not settled within {CLICK_BUDGET:?}");
                    Ok(callback(
                        "error",
                        "This is taking longer than usual; click again in a moment to retry.",
                        None,
                    ))
                }
            }
        };
        Box::pin(
            fut::wrap_future(answered)
                .map(|answer: Result<Value, HandlerError>, _, _| answer.map(Some)),
        )
    }
}

/// The answer to a click that must not start a code: the session is not
/// pending (or past its deadline), or the clicker is not its recipient.
fn refusal(session: &SessionView, operator: &str) -> Option<Value> {
    match session.state {
        SessionState::Completed => {
            let name = session.user_name.clone().unwrap_or_default();
            return Some(callback(
                "info",
                &format!("Already authorized as {name}."),
                Some(authorized_card(&name)),
            ));
        }
        SessionState::Pending if session.expires_at > crate::db::now() => {}
        SessionState::Pending | SessionState::Expired => {
            return Some(callback(
                "error",
                "This authorization card has expired; ask for a new one.",
                Some(failure_card("The authorization request expired.")),
            ))
        }
        other => {
            return Some(callback(
                "error",
                &format!("This authorization is {other}; ask for a new card."),
                None,
            ))
        }
    }
    if session.open_id.as_deref() != Some(operator) {
        metrics::counter!(crate::metrics::AUTH_FAILED, "reason" => "wrong_operator").increment(1);
        tracing::warn!(session_id = %session.session_id, %operator, "card clicked by someone other than its recipient");
        return Some(callback(
            "error",
            "This authorization card was sent to someone else.",
            None,
        ));
    }
    None
}

impl Handler<SessionEnded> for CardAuth {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, ctx: &mut Context<Self>) {
        let card = match &msg.outcome {
            SessionOutcome::Completed { user_name } => authorized_card(user_name),
            SessionOutcome::Failed { reason } => failure_card(reason),
            SessionOutcome::Expired => {
                failure_card("The authorization request expired before it was approved.")
            }
        };
        let cards = self.cards.clone();
        ctx.spawn(fut::wrap_future(async move {
            cards.replace(msg.session_id, &msg.message_id, &card).await;
        }));
    }
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
