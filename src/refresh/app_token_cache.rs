//! `AppTokenCache`: the app's tenant and app access tokens, fetched once and
//! shared.
//!
//! Concurrent callers wait on one fetch (single flight), so a burst of card
//! sends after start-up costs one token request, not hundreds. A token is
//! reused until [`REFRESH_MARGIN`] before it expires: the platform hands out
//! a new token only when less than 30 minutes remain, so refreshing earlier
//! would just return the same one. A caller that gets a token-invalid answer
//! invalidates it ([`with_tenant_token`] does this and retries once).

use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::domain::Secret;
use crate::lark::auth_api::AppToken;
use crate::lark::client::{LarkClient, LarkError};
use crate::supervise::{Lifecycle, Managed};
use crate::telemetry::Masked;

pub const NAME: &str = "app_token_cache";

/// Refresh this long before expiry (inside the platform's 30-minute window).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(10 * 60);

/// Which app-level token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Tenant,
    App,
}

impl TokenKind {
    fn label(self) -> &'static str {
        match self {
            Self::Tenant => "tenant_access_token",
            Self::App => "app_access_token",
        }
    }
}

/// A token fetch failed; shared by every caller waiting on that fetch.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not get the {kind}: {message}")]
pub struct AppTokenError {
    pub kind: &'static str,
    pub message: String,
    /// Worth retrying later (network, 5xx, rate limit).
    pub transient: bool,
}

/// A platform call made with an app token.
#[derive(Debug, thiserror::Error)]
pub enum AppCallError {
    #[error(transparent)]
    Token(#[from] AppTokenError),
    #[error(transparent)]
    Lark(#[from] LarkError),
    #[error("the app token cache is unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
}

/// The current token of a kind (fetching it if needed).
#[derive(Message)]
#[rtype(result = "Result<String, AppTokenError>")]
pub struct GetToken(pub TokenKind);

/// `token` was refused as invalid: forget it so the next caller refetches.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InvalidateToken {
    pub kind: TokenKind,
    pub token: String,
}

type Waiter = oneshot::Sender<Result<String, AppTokenError>>;

#[derive(Default)]
struct Slot {
    current: Option<(String, Instant)>,
    waiters: Vec<Waiter>,
    fetching: bool,
}

impl Slot {
    fn fresh(&self) -> Option<&str> {
        self.current
            .as_ref()
            .filter(|(_, refresh_at)| Instant::now() < *refresh_at)
            .map(|(t, _)| t.as_str())
    }
}

pub struct AppTokenCache {
    client: LarkClient,
    app_id: String,
    app_secret: Secret,
    tenant: Slot,
    app: Slot,
    lifecycle: Lifecycle,
}

impl AppTokenCache {
    pub fn new(client: LarkClient, app_id: String, app_secret: Secret) -> Self {
        Self {
            client,
            app_id,
            app_secret,
            tenant: Slot::default(),
            app: Slot::default(),
            lifecycle: Lifecycle::new(NAME),
        }
    }

    fn slot(&mut self, kind: TokenKind) -> &mut Slot {
        match kind {
            TokenKind::Tenant => &mut self.tenant,
            TokenKind::App => &mut self.app,
        }
    }

    fn fetch(&mut self, kind: TokenKind, ctx: &mut Context<Self>) {
        if std::mem::replace(&mut self.slot(kind).fetching, true) {
            return;
        }
        let client = self.client.clone();
        let app_id = self.app_id.clone();
        let secret = self.app_secret.clone();
        let request = async move {
            match kind {
                TokenKind::Tenant => client.tenant_access_token(&app_id, secret.expose()).await,
                TokenKind::App => client.app_access_token(&app_id, secret.expose()).await,
            }
        };
        ctx.spawn(request.into_actor(self).map(move |result: Result<AppToken, LarkError>, act, _| {
            let answer = match result {
                Ok(token) => {
                    let refresh_at = Instant::now() + token.expire.saturating_sub(REFRESH_MARGIN);
                    tracing::debug!(kind = kind.label(), token = %Masked(&token.token), expire = ?token.expire, "app token fetched");
                    act.slot(kind).current = Some((token.token.clone(), refresh_at));
                    if act.lifecycle.state() != crate::supervise::ActorState::Running {
                        act.lifecycle.running();
                    }
                    Ok(token.token)
                }
                Err(e) => {
                    tracing::warn!(kind = kind.label(), error = %e, "app token fetch failed");
                    act.lifecycle.degraded(&e);
                    Err(AppTokenError {
                        kind: kind.label(),
                        transient: e.is_transient(),
                        message: e.to_string(),
                    })
                }
            };
            let slot = act.slot(kind);
            slot.fetching = false;
            for waiter in slot.waiters.drain(..) {
                let _ = waiter.send(answer.clone());
            }
        }));
    }
}

impl Managed for AppTokenCache {
    const NAME: &'static str = NAME;

    fn on_start(&mut self, _: &mut Context<Self>) {}

    fn on_restart(&mut self) {
        // A restart drops the fetch future; its waiters see a closed channel.
        self.tenant = Slot::default();
        self.app = Slot::default();
    }

    fn in_flight(&self) -> u64 {
        (self.tenant.waiters.len() + self.app.waiters.len()) as u64
    }
}

crate::managed_actor!(AppTokenCache);

impl Handler<GetToken> for AppTokenCache {
    type Result = ResponseFuture<Result<String, AppTokenError>>;

    fn handle(&mut self, GetToken(kind): GetToken, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(token) = self.slot(kind).fresh() {
            let token = token.to_owned();
            return Box::pin(async move { Ok(token) });
        }
        let (tx, rx) = oneshot::channel();
        self.slot(kind).waiters.push(tx);
        self.fetch(kind, ctx);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(AppTokenError {
                    kind: kind.label(),
                    message: "the token cache restarted during the fetch".into(),
                    transient: true,
                })
            })
        })
    }
}

impl Handler<InvalidateToken> for AppTokenCache {
    type Result = ();

    fn handle(&mut self, msg: InvalidateToken, _: &mut Context<Self>) {
        let slot = self.slot(msg.kind);
        if slot.current.as_ref().is_some_and(|(t, _)| *t == msg.token) {
            tracing::info!(kind = msg.kind.label(), token = %Masked(&msg.token), "app token refused as invalid; refetching");
            slot.current = None;
        }
    }
}

/// Run `call` with the tenant token; if the platform calls the token
/// invalid, refetch it and try once more (neither official SDK does).
pub async fn with_tenant_token<T, F, Fut>(
    cache: &Addr<AppTokenCache>,
    call: F,
) -> Result<T, AppCallError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, LarkError>>,
{
    with_token(cache, TokenKind::Tenant, call).await
}

/// Like [`with_tenant_token`], for either kind.
pub async fn with_token<T, F, Fut>(
    cache: &Addr<AppTokenCache>,
    kind: TokenKind,
    call: F,
) -> Result<T, AppCallError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, LarkError>>,
{
    let token = cache.send(GetToken(kind)).await??;
    match call(token.clone()).await {
        Err(e) if e.is_token_invalid() => {
            cache.do_send(InvalidateToken { kind, token });
            let token = cache.send(GetToken(kind)).await??;
            Ok(call(token).await?)
        }
        other => Ok(other?),
    }
}
