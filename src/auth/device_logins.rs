//! `DeviceLogins`: the one implementation of Feishu's device flow
//! (`lark-open-platform.md` §8.4; larksuite/cli `internal/auth/device_flow.go`),
//! behind both ways a user authorizes by device code:
//! - the authorization card: a click on its Authorize button reaches
//!   `CardAuth`, which asks for [`StartCardLogin`] and answers the click
//!   with the user code and the verification link;
//! - `POST /admin/device-logins` ([`StartDeviceLogin`]), which creates a
//!   `device_code` session and answers the code and link at once, for users
//!   the bot cannot message.
//!
//! The app's own credentials ask the accounts host for the code, so no
//! inbound HTTP is needed. One timer per pending login then polls the token
//! endpoint at the interval the host asked for (+5 s per `slow_down`, capped
//! at 60 s, as the reference client does). On approval it fetches
//! `user_info` and completes the session; only the intended user's approval
//! counts. Polls survive a restart of the actor: the pending logins are kept
//! and their timers set again.
//!
//! How an attempt ends depends on where it came from. A card's session
//! outlives its codes: an expired code or a link approved by another
//! account ends only the attempt, the session stays pending until its own
//! deadline, and the card is replaced with the reason and a button for a
//! new code. A declined request fails the session (the user said no). An
//! admin login has no card to retry from, so any failure fails its session
//! and the operator starts a new one.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::NaiveDateTime;
use serde::Serialize;
use uuid::Uuid;

use super::card::retry_card;
use super::card_updates::CardUpdater;
use super::error::AuthError;
use super::registry::{CompleteSession, CreateSession, FailSession, SessionRegistry};
use crate::device::device_auth::DeviceCode;
use crate::device::error::{DeviceError, Step};
use crate::device::feishu::{next_interval, FeishuDeviceClient, FeishuGrant, FeishuPoll};
use crate::domain::scopes::Scopes;
use crate::domain::AuthMethod;
use crate::lark::auth_api::UserToken;
use crate::lark::client::LarkClient;
use crate::metrics::AUTH_FAILED;
use crate::supervise::{Lifecycle, Managed};
use crate::telemetry::Masked;

pub const NAME: &str = "device_logins";

/// A click must be answered within the platform's 3 s; asking the accounts
/// host for a code gets this much of it.
const CODE_REQUEST_BUDGET: Duration = Duration::from_millis(2_000);

/// The access denial the token endpoint answers when the user declines
/// (RFC 8628 §3.5; larksuite/cli `PollDeviceToken`).
const ACCESS_DENIED: &str = "access_denied";

/// Start a device login, optionally for a known user.
#[derive(Message)]
#[rtype(result = "Result<DeviceLoginStarted, AuthError>")]
pub struct StartDeviceLogin {
    /// When set, only this user's approval completes the session.
    pub open_id: Option<String>,
}

/// Start the device code behind a click on a pending session's card, or
/// answer the live one again: a second click shows the same link.
#[derive(Message)]
#[rtype(result = "Result<DeviceLoginStarted, AuthError>")]
pub struct StartCardLogin {
    pub session_id: Uuid,
    /// The card's recipient; only their approval completes the session.
    pub open_id: String,
    /// The card, replaced when an attempt ends without completing.
    pub message_id: Option<String>,
    /// The session's deadline; polling stops there, whatever the code says.
    pub expires_at: NaiveDateTime,
}

/// What to show the user.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceLoginStarted {
    pub session_id: String,
    pub user_code: String,
    pub verification_uri: String,
    /// The link with the code filled in; open it, or show it as a QR code.
    pub verification_uri_complete: String,
    /// When the code stops working.
    pub expires_at: NaiveDateTime,
    /// Seconds between polls, as the host asked.
    pub interval: u64,
}

impl DeviceLoginStarted {
    /// How long the code is still good for.
    pub fn valid_for(&self) -> Duration {
        (self.expires_at - crate::db::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
    }
}

/// Where a login came from, which decides how its attempts end.
#[derive(Clone)]
enum Origin {
    Admin,
    Card {
        message_id: Option<String>,
        session_deadline: NaiveDateTime,
    },
}

struct PendingLogin {
    device_code: String,
    open_id: Option<String>,
    interval: Duration,
    deadline: Instant,
    shown: DeviceLoginStarted,
    origin: Origin,
}

/// Why an attempt ended without completing its session.
enum AttemptEnd {
    CodeExpired,
    Denied,
    WrongAccount { approved_by: String },
    Refused(String),
}

impl AttemptEnd {
    fn reason(&self) -> &'static str {
        match self {
            Self::CodeExpired => "device_code_expired",
            Self::Denied => "device_code_denied",
            Self::WrongAccount { .. } => "wrong_account",
            Self::Refused(_) => "device_login_refused",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::CodeExpired => {
                "the device code expired before the user approved it".to_owned()
            }
            Self::Denied => format!("the user declined the authorization ({ACCESS_DENIED})"),
            Self::WrongAccount { approved_by } => format!(
                "the link was approved by another user ({approved_by}), not the one it was meant for"
            ),
            Self::Refused(why) => why.clone(),
        }
    }

    /// What the card says when the session stays pending.
    fn card_text(&self) -> String {
        match self {
            Self::CodeExpired => {
                "The code expired before it was approved. Get a new link to try again.".to_owned()
            }
            Self::WrongAccount { approved_by } => format!(
                "The link was approved by another account ({approved_by}), so it was not used. \
                 Get a new link and approve it signed in as yourself."
            ),
            Self::Denied | Self::Refused(_) => self.message(),
        }
    }
}

pub struct DeviceLogins {
    accounts: FeishuDeviceClient,
    /// `OAUTH_SCOPES`, asked of every user (`offline_access` included).
    scopes: Scopes,
    lark: LarkClient,
    registry: Addr<SessionRegistry>,
    cards: CardUpdater,
    pending: HashMap<Uuid, PendingLogin>,
    /// Sessions whose code is being asked for right now.
    starting: HashSet<Uuid>,
    lifecycle: Lifecycle,
}

impl DeviceLogins {
    pub fn new(
        accounts: FeishuDeviceClient,
        scopes: Scopes,
        lark: LarkClient,
        registry: Addr<SessionRegistry>,
        cards: CardUpdater,
    ) -> Self {
        Self {
            accounts,
            scopes,
            lark,
            registry,
            cards,
            pending: HashMap::new(),
            starting: HashSet::new(),
            lifecycle: Lifecycle::new(NAME),
        }
    }

    /// Ask the accounts host for a code, within the click's budget.
    async fn request_code(
        accounts: FeishuDeviceClient,
        scope: String,
    ) -> Result<DeviceCode, DeviceError> {
        match tokio::time::timeout(CODE_REQUEST_BUDGET, accounts.authorize(&scope)).await {
            Ok(answer) => answer,
            Err(_) => Err(DeviceError::Network {
                step: Step::DeviceAuthorization,
                url: accounts.device_authorization_url(),
                detail: format!("no answer within {CODE_REQUEST_BUDGET:?}"),
            }),
        }
    }

    /// Keep `code` as the pending login of `session_id` and start polling.
    fn track(
        &mut self,
        session_id: Uuid,
        code: DeviceCode,
        open_id: Option<String>,
        origin: Origin,
        ctx: &mut Context<Self>,
    ) -> DeviceLoginStarted {
        let lifetime = Duration::from_secs(code.expires_in);
        let interval = Duration::from_secs(code.interval.max(1));
        tracing::info!(%session_id, device_code = %Masked(&code.device_code), user_code = %code.user_code, "device login started");
        let shown = DeviceLoginStarted {
            session_id: session_id.to_string(),
            verification_uri_complete: code
                .verification_uri_complete
                .clone()
                .unwrap_or_else(|| code.verification_uri.clone()),
            user_code: code.user_code,
            verification_uri: code.verification_uri,
            expires_at: crate::db::now()
                + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::zero()),
            interval: interval.as_secs(),
        };
        self.pending.insert(
            session_id,
            PendingLogin {
                device_code: code.device_code,
                open_id,
                interval,
                deadline: Instant::now() + lifetime,
                shown: shown.clone(),
                origin,
            },
        );
        self.schedule(session_id, ctx);
        shown
    }

    fn schedule(&self, session_id: Uuid, ctx: &mut Context<Self>) {
        if let Some(login) = self.pending.get(&session_id) {
            ctx.run_later(login.interval, move |act, ctx| act.poll(session_id, ctx));
        }
    }

    fn poll(&mut self, session_id: Uuid, ctx: &mut Context<Self>) {
        let Some(login) = self.pending.get(&session_id) else {
            return;
        };
        if let Origin::Card {
            session_deadline, ..
        } = &login.origin
        {
            if *session_deadline <= crate::db::now() {
                // The session is over; the registry's sweep expires it and
                // its card says so.
                self.pending.remove(&session_id);
                return;
            }
        }
        if Instant::now() >= login.deadline {
            self.end_attempt(session_id, AttemptEnd::CodeExpired);
            return;
        }
        let accounts = self.accounts.clone();
        let device_code = login.device_code.clone();
        let poll = async move { accounts.poll(&device_code).await };
        ctx.spawn(poll.into_actor(self).map(move |result, act, ctx| {
            let Some(login) = act.pending.get_mut(&session_id) else {
                return;
            };
            match result {
                Ok(FeishuPoll::Granted(grant)) => act.complete(session_id, grant, ctx),
                Ok(FeishuPoll::Expired) => act.end_attempt(session_id, AttemptEnd::CodeExpired),
                Ok(other @ (FeishuPoll::Pending | FeishuPoll::SlowDown)) => {
                    login.interval = next_interval(login.interval, &other);
                    act.schedule(session_id, ctx);
                }
                // The accounts host was unreachable for a moment: the code
                // is still good until its deadline.
                Err(e @ DeviceError::Network { .. }) => {
                    tracing::warn!(%session_id, error = %e, "device login poll failed; retrying");
                    act.schedule(session_id, ctx);
                }
                Err(DeviceError::AuthorizationFailed(e)) if e == ACCESS_DENIED => {
                    act.end_attempt(session_id, AttemptEnd::Denied)
                }
                Err(e) => act.end_attempt(session_id, AttemptEnd::Refused(e.to_string())),
            }
        }));
    }

    fn complete(&mut self, session_id: Uuid, grant: FeishuGrant, ctx: &mut Context<Self>) {
        let Some(login) = self.pending.remove(&session_id) else {
            return;
        };
        let (lark, registry) = (self.lark.clone(), self.registry.clone());
        let expected = login.open_id.clone();
        let origin = login.origin.clone();
        let method = match origin {
            Origin::Admin => AuthMethod::DeviceCode,
            Origin::Card { .. } => AuthMethod::WebsocketCard,
        };
        let intended = expected.clone();
        let work = async move {
            let user = lark.user_info(&grant.access_token).await?;
            if intended.as_deref().is_some_and(|e| e != user.open_id) {
                // Their tokens are dropped here, never stored.
                return Ok(Err(user.name.unwrap_or(user.open_id)));
            }
            let token = UserToken {
                refresh_expires_in: grant
                    .refresh_token
                    .as_ref()
                    .map(|_| Duration::from_secs(grant.refresh_token_expires_in)),
                access_token: grant.access_token,
                refresh_token: grant.refresh_token,
                expires_in: Duration::from_secs(grant.expires_in),
                scope: grant.scope,
                token_type: "Bearer".into(),
            };
            registry
                .send(CompleteSession {
                    session_id,
                    method,
                    token,
                    user,
                })
                .await?
                .map(Ok)
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, _| match result {
            Ok(Ok(session)) => {
                tracing::info!(%session_id, open_id = ?session.open_id, "device login completed");
            }
            Ok(Err(approved_by)) => {
                tracing::warn!(%session_id, expected = ?expected, %approved_by, "device login approved by another user");
                act.ended(session_id, &origin, AttemptEnd::WrongAccount { approved_by });
            }
            // Someone else settled the session first (it expired, or was
            // revoked): nothing of ours to fail.
            Err(AuthError::NotPending(_) | AuthError::Expired | AuthError::UnknownSession(_)) => {
                tracing::info!(%session_id, "device login approved after its session ended");
            }
            Err(e) => {
                tracing::warn!(%session_id, error = %e, "device login could not be completed");
                act.registry.do_send(FailSession::new(session_id, &e));
            }
        }));
    }

    /// The attempt of a still-pending login ended without a grant.
    fn end_attempt(&mut self, session_id: Uuid, end: AttemptEnd) {
        if let Some(login) = self.pending.remove(&session_id) {
            self.ended(session_id, &login.origin, end);
        }
    }

    /// Record how an attempt ended: fail the session, or (a card's session
    /// that can be retried) keep it pending and say so on the card.
    fn ended(&mut self, session_id: Uuid, origin: &Origin, end: AttemptEnd) {
        tracing::info!(%session_id, reason = end.reason(), "device login attempt ended");
        let retry = matches!(
            end,
            AttemptEnd::CodeExpired | AttemptEnd::WrongAccount { .. }
        );
        match origin {
            Origin::Card { message_id, .. } if retry => {
                metrics::counter!(AUTH_FAILED, "reason" => end.reason()).increment(1);
                if let Some(message_id) = message_id.clone() {
                    let cards = self.cards.clone();
                    let card = retry_card(session_id, &end.card_text());
                    actix::spawn(async move {
                        cards.replace(session_id, &message_id, &card).await;
                    });
                }
            }
            _ => self.registry.do_send(FailSession {
                session_id,
                reason: end.reason(),
                message: end.message(),
            }),
        }
    }
}

impl Managed for DeviceLogins {
    const NAME: &'static str = NAME;

    /// Timers die with the old context; the logins they polled do not.
    fn on_start(&mut self, ctx: &mut Context<Self>) {
        let ids: Vec<Uuid> = self.pending.keys().copied().collect();
        for session_id in ids {
            self.schedule(session_id, ctx);
        }
    }

    fn on_restart(&mut self) {
        self.starting.clear();
    }

    fn in_flight(&self) -> u64 {
        self.pending.len() as u64
    }
}

crate::managed_actor!(DeviceLogins);

impl Handler<StartDeviceLogin> for DeviceLogins {
    type Result = ResponseActFuture<Self, Result<DeviceLoginStarted, AuthError>>;

    fn handle(&mut self, msg: StartDeviceLogin, _: &mut Context<Self>) -> Self::Result {
        let (accounts, registry) = (self.accounts.clone(), self.registry.clone());
        let scope = self.scopes.to_param();
        let open_id = msg.open_id.clone();
        let work = async move {
            let session = registry
                .send(CreateSession {
                    open_id,
                    method: AuthMethod::DeviceCode,
                })
                .await??;
            let session_id = Uuid::parse_str(&session.session_id)
                .map_err(|e| AuthError::BadInput(e.to_string()))?;
            match accounts.authorize(&scope).await {
                Ok(code) => Ok((session_id, code)),
                Err(e) => {
                    let message = e.to_string();
                    registry.do_send(FailSession {
                        session_id,
                        reason: "device_login_refused",
                        message,
                    });
                    Err(AuthError::DeviceLogin(e))
                }
            }
        };
        Box::pin(work.into_actor(self).map(move |result, act, ctx| {
            let (session_id, code) = result?;
            Ok(act.track(session_id, code, msg.open_id, Origin::Admin, ctx))
        }))
    }
}

impl Handler<StartCardLogin> for DeviceLogins {
    type Result = ResponseActFuture<Self, Result<DeviceLoginStarted, AuthError>>;

    fn handle(&mut self, msg: StartCardLogin, _: &mut Context<Self>) -> Self::Result {
        let session_id = msg.session_id;
        if let Some(login) = self.pending.get(&session_id) {
            if Instant::now() < login.deadline {
                return Box::pin(fut::ready(Ok(login.shown.clone())));
            }
        }
        if !self.starting.insert(session_id) {
            return Box::pin(fut::ready(Err(AuthError::InProgress)));
        }
        let work = Self::request_code(self.accounts.clone(), self.scopes.to_param());
        Box::pin(work.into_actor(self).map(move |result, act, ctx| {
            act.starting.remove(&session_id);
            match result {
                Ok(code) => {
                    let origin = Origin::Card {
                        message_id: msg.message_id,
                        session_deadline: msg.expires_at,
                    };
                    Ok(act.track(session_id, code, Some(msg.open_id), origin, ctx))
                }
                // The session stays pending: the user can click again.
                Err(e) => {
                    metrics::counter!(AUTH_FAILED, "reason" => "device_login_refused").increment(1);
                    tracing::warn!(%session_id, error = %e, "no device code for the card click");
                    Err(AuthError::DeviceLogin(e))
                }
            }
        }))
    }
}
