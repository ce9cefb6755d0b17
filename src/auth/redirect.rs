//! The OAuth redirect flow, when `OAUTH_REDIRECT_URI` is set.
//!
//! The authorization card's button opens the authorize page on the accounts
//! host directly (§5.1), carrying a fresh random `state` and the S256
//! challenge of a fresh PKCE verifier. The session is created as a pending
//! `oauth_redirect` session holding the state's hash and the sealed
//! verifier; the state itself is never stored, and it is never the session
//! id, which appears in logs and card values.
//!
//! `/oauth/callback?code&state` then finds the session by the state's hash
//! and accepts it only while it is that pending, unexpired `oauth_redirect`
//! session; the code is exchanged at v2 `oauth/token` with the verifier and
//! the redirect URI, so a code obtained without this authorize request
//! cannot be redeemed here. Completion clears the hash and the verifier:
//! a state completes one session once, and a replayed callback finds
//! nothing.
//!
//! Nothing a callback carries can fail the session: a replayed or unknown
//! state, a code the platform refuses, or a code approved by another
//! account than the one the card was sent to is answered with an error and
//! counted, while the session stays pending for its rightful user until its
//! deadline. Otherwise anyone holding the link could spoil it.
//!
//! The redirect URI only has to be reachable from the user's browser: the
//! platform never calls it, it sends the browser there.

use actix::prelude::*;

use super::error::AuthError;
use super::registry::{
    CompleteSession, CreateRedirectSession, FindRedirectSession, RedirectSession, SessionRegistry,
    SessionView,
};
use crate::domain::{AuthMethod, Scopes, Secret, SessionState};
use crate::lark::auth_api::{AuthorizeRequest, PkceVerifier, RedirectState};
use crate::lark::client::LarkClient;
use crate::metrics::AUTH_FAILED;

/// What the flow needs; cheap to clone, one clone per request.
#[derive(Clone)]
pub struct RedirectFlow {
    pub client: LarkClient,
    pub registry: Addr<SessionRegistry>,
    pub app_id: String,
    pub app_secret: Secret,
    pub redirect_uri: url::Url,
    pub scopes: Scopes,
}

impl RedirectFlow {
    /// Create `open_id`'s pending session and the authorize URL its card's
    /// button opens.
    pub async fn start(&self, open_id: &str) -> Result<(SessionView, String), AuthError> {
        let state = RedirectState::generate();
        let verifier = PkceVerifier::generate();
        let session = self
            .registry
            .send(CreateRedirectSession {
                open_id: open_id.to_owned(),
                state_hash: state.hash(),
                verifier: verifier.clone(),
            })
            .await??;
        let url = self.client.authorize_url(&AuthorizeRequest {
            app_id: &self.app_id,
            redirect_uri: self.redirect_uri.as_str(),
            scopes: &self.scopes,
            state: &state,
            pkce: &verifier,
        });
        Ok((session, url))
    }

    /// Complete the session `state` belongs to with `code`. Every refusal
    /// is counted in `lark_auth_failed_total{reason}` and leaves the
    /// session as it was.
    pub async fn complete(
        &self,
        code: &str,
        state: &RedirectState,
    ) -> Result<SessionView, AuthError> {
        let result = self.try_complete(code, state).await;
        if let Err(e) = &result {
            metrics::counter!(AUTH_FAILED, "reason" => e.reason()).increment(1);
            tracing::warn!(error = %e, "OAuth callback refused");
        }
        result
    }

    async fn try_complete(
        &self,
        code: &str,
        state: &RedirectState,
    ) -> Result<SessionView, AuthError> {
        let found = self
            .registry
            .send(FindRedirectSession {
                state_hash: state.hash(),
            })
            .await??;
        let Some(RedirectSession { session, verifier }) = found else {
            return Err(AuthError::UnknownState);
        };
        if session.auth_method != AuthMethod::OauthRedirect {
            return Err(AuthError::UnknownState);
        }
        match session.state {
            SessionState::Pending if session.expires_at > crate::db::now() => {}
            SessionState::Pending | SessionState::Expired => return Err(AuthError::Expired),
            other => return Err(AuthError::NotPending(other)),
        }
        let verifier = verifier.ok_or_else(|| {
            AuthError::BadInput("the session's stored PKCE verifier is damaged".into())
        })?;
        let session_id = uuid::Uuid::parse_str(&session.session_id)
            .map_err(|e| AuthError::BadInput(format!("stored session id: {e}")))?;
        tracing::debug!(%session_id, "exchanging the redirect's code");
        let token = self
            .client
            .exchange_code_v2(
                &self.app_id,
                self.app_secret.expose(),
                code,
                self.redirect_uri.as_str(),
                &verifier,
            )
            .await
            .map_err(AuthError::Exchange)?;
        let user = self.client.user_info(&token.access_token).await?;
        if let Some(intended) = session.open_id.as_deref() {
            if intended != user.open_id {
                tracing::warn!(%session_id, intended, approved_by = %user.open_id, "redirect approved by another account; its tokens are dropped");
                return Err(AuthError::ForeignUser);
            }
        }
        self.registry
            .send(CompleteSession {
                session_id,
                method: AuthMethod::OauthRedirect,
                token,
                user,
            })
            .await?
    }
}
