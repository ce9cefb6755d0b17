//! `DeviceLogins`: the third way a Feishu user can authorize the app, for
//! users without a chat open to the bot or a browser on this machine: the
//! accounts host's device flow (`lark-open-platform.md` §8.4).
//!
//! `POST /admin/device-logins` creates a pending `device_code` session and
//! answers the user code and verification link at once; this actor then
//! polls the token endpoint in the background, one timer per pending login,
//! at the interval the host asked for (longer after `slow_down`), and
//! completes the session like the card flow does — or fails it when the
//! user declines or the code expires. Polls survive a restart of the actor:
//! the pending logins are kept and their timers set again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::NaiveDateTime;
use serde::Serialize;
use uuid::Uuid;

use super::error::AuthError;
use super::registry::{CompleteSession, CreateSession, FailSession, SessionRegistry};
use crate::device::error::DeviceError;
use crate::device::feishu::{next_interval, FeishuDeviceClient, FeishuGrant, FeishuPoll};
use crate::domain::{AuthMethod, Scopes};
use crate::lark::auth_api::UserToken;
use crate::lark::client::LarkClient;
use crate::supervise::{Lifecycle, Managed};
use crate::telemetry::Masked;

pub const NAME: &str = "device_logins";

/// Start a device login, optionally for a known user.
#[derive(Message)]
#[rtype(result = "Result<DeviceLoginStarted, AuthError>")]
pub struct StartDeviceLogin {
    /// When set, only this user's approval completes the session.
    pub open_id: Option<String>,
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

struct PendingLogin {
    device_code: String,
    open_id: Option<String>,
    interval: Duration,
    deadline: Instant,
}

pub struct DeviceLogins {
    accounts: FeishuDeviceClient,
    lark: LarkClient,
    registry: Addr<SessionRegistry>,
    /// `OAUTH_SCOPES`, asked of every user.
    scopes: Scopes,
    pending: HashMap<Uuid, PendingLogin>,
    lifecycle: Lifecycle,
}

impl DeviceLogins {
    pub fn new(
        accounts: FeishuDeviceClient,
        lark: LarkClient,
        registry: Addr<SessionRegistry>,
        scopes: Scopes,
    ) -> Self {
        Self {
            accounts,
            lark,
            registry,
            scopes,
            pending: HashMap::new(),
            lifecycle: Lifecycle::new(NAME),
        }
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
        if Instant::now() >= login.deadline {
            self.fail(
                session_id,
                "device_code_expired",
                "the user did not approve the device login before the code expired".into(),
            );
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
                Ok(FeishuPoll::Expired) => act.fail(
                    session_id,
                    "device_code_expired",
                    "the device code expired before the user approved it".into(),
                ),
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
                Err(e) => act.fail(session_id, "device_login_refused", e.to_string()),
            }
        }));
    }

    fn complete(&mut self, session_id: Uuid, grant: FeishuGrant, ctx: &mut Context<Self>) {
        let Some(login) = self.pending.remove(&session_id) else {
            return;
        };
        let (lark, registry) = (self.lark.clone(), self.registry.clone());
        let work = async move {
            let user = lark.user_info(&grant.access_token).await?;
            if login
                .open_id
                .as_deref()
                .is_some_and(|expected| expected != user.open_id)
            {
                return Err(AuthError::WrongOperator);
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
                    method: AuthMethod::DeviceCode,
                    token,
                    user,
                })
                .await?
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, _| match result {
            Ok(session) => {
                tracing::info!(%session_id, open_id = ?session.open_id, "device login completed");
            }
            Err(e) => {
                tracing::warn!(%session_id, error = %e, "device login could not be completed");
                act.registry.do_send(FailSession::new(session_id, &e));
            }
        }));
    }

    fn fail(&mut self, session_id: Uuid, reason: &'static str, message: String) {
        self.pending.remove(&session_id);
        tracing::info!(%session_id, reason, "device login failed");
        self.registry.do_send(FailSession {
            session_id,
            reason,
            message,
        });
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

    fn on_restart(&mut self) {}

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
            let lifetime = Duration::from_secs(code.expires_in);
            let interval = Duration::from_secs(code.interval.max(1));
            tracing::info!(%session_id, device_code = %Masked(&code.device_code), user_code = %code.user_code, "device login started");
            let started = DeviceLoginStarted {
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
            act.pending.insert(
                session_id,
                PendingLogin {
                    device_code: code.device_code,
                    open_id: msg.open_id,
                    interval,
                    deadline: Instant::now() + lifetime,
                },
            );
            act.schedule(session_id, ctx);
            Ok(started)
        }))
    }
}
