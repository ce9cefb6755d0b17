//! The simulated user directory and OAuth bookkeeping (§5 of the protocol
//! notes): users, authorization codes, user tokens with rotation. The HTTP
//! side is in [`super::oauth_routes`].
//!
//! Rules, as on the platform: codes are single use and live 5 minutes;
//! refresh tokens rotate and are single use, and one is refused with 20026
//! by an endpoint family other than the one that issued it (§5.3: "refresh
//! at the endpoint family that issued the token", larksuite/cli
//! `uat_client.go`); v2 hands out a refresh token only for the
//! `offline_access` scope. Every token carries the scopes that were asked
//! for (§5.1: "a user token carries only the scopes requested and
//! granted"); `user_info` leaves out the email without
//! `contact:user.email:readonly` (§5.4, fields needing extra scopes are
//! omitted) and Aily refuses a user token without its scope (99991679,
//! [`OAuthState::authenticate_for`]). Every presentation of a refresh token is
//! counted, so tests can assert each one was spent exactly once. Error codes
//! are in [`crate::lark::codes`]; the ones the platform does not document
//! (a reused code: 20065, a redirect/PKCE mismatch: 20071) are marked there.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::open_api::Reject;
use super::state::lock;
use crate::lark::codes;

/// The scope `user_info` needs to answer the email.
pub const EMAIL_SCOPE: &str = "contact:user.email:readonly";

/// What a service with the default `OAUTH_SCOPES` is granted: the scope of
/// seeded tokens.
pub fn default_scope() -> String {
    crate::config::defaults()
        .ok()
        .and_then(|raw| raw.get("OAUTH_SCOPES").cloned())
        .and_then(|list| crate::domain::Scopes::parse(&list).ok())
        .map_or_else(
            || crate::domain::scopes::OFFLINE_ACCESS.to_owned(),
            |s| s.to_param(),
        )
}

fn has_scope(granted: &str, scope: &str) -> bool {
    granted.split_whitespace().any(|s| s == scope)
}
/// How long an authorization code lives unless a test changes it.
pub const CODE_TTL: Duration = Duration::from_secs(300);
/// How long a user access token lives unless a test changes it.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(7200);
/// How long a refresh token lives unless a test changes it.
pub const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The tenant every simulated user belongs to.
pub const SIM_TENANT_KEY: &str = "sim_tenant_0001";

/// A user of the simulated tenant. Tests add and edit users at any time;
/// `user_info` always answers the current profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUser {
    pub open_id: String,
    pub union_id: String,
    pub user_id: String,
    pub name: String,
    pub en_name: String,
    pub avatar_url: String,
    pub email: Option<String>,
    pub enterprise_email: Option<String>,
    pub mobile: Option<String>,
    pub employee_no: Option<String>,
}

impl SimUser {
    /// A user with ids and contact fields derived from `open_id`.
    pub fn new(open_id: &str, name: &str) -> Self {
        let suffix = open_id.strip_prefix("ou_").unwrap_or(open_id);
        let login: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let login = if login.is_empty() {
            suffix.to_owned()
        } else {
            login
        };
        Self {
            open_id: open_id.to_owned(),
            union_id: format!("on_{suffix}"),
            user_id: format!("u{suffix}"),
            name: name.to_owned(),
            en_name: name.to_owned(),
            avatar_url: format!("https://avatars.example.com/{suffix}.png"),
            email: Some(format!("{login}@example.com")),
            enterprise_email: None,
            mobile: None,
            employee_no: None,
        }
    }

    fn profile(&self, scope: &str) -> Value {
        let mut profile = json!({
            "name": self.name,
            "en_name": self.en_name,
            "avatar_url": self.avatar_url,
            "avatar_thumb": self.avatar_url,
            "avatar_middle": self.avatar_url,
            "avatar_big": self.avatar_url,
            "open_id": self.open_id,
            "union_id": self.union_id,
            "user_id": self.user_id,
            "tenant_key": SIM_TENANT_KEY,
        });
        // Ungranted or unset fields are left out, as the platform does.
        let email = has_scope(scope, EMAIL_SCOPE);
        for (key, value, granted) in [
            ("email", &self.email, email),
            ("enterprise_email", &self.enterprise_email, email),
            ("mobile", &self.mobile, true),
            ("employee_no", &self.employee_no, true),
        ] {
            if let (Some(value), true) = (value, granted) {
                profile[key] = json!(value);
            }
        }
        profile
    }
}

/// Which endpoint family issued a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// The accounts host's `/oauth/v3/token` (device flow).
    Accounts,
    /// `/open-apis/authen/v2/oauth/token` (redirect flow).
    V2,
}

/// Something that expires: on its clock, or on a test's demand.
#[derive(Debug, Clone)]
struct Lifetime {
    expires_at: Instant,
    forced: bool,
}

impl Lifetime {
    fn starting_now(ttl: Duration) -> Self {
        Self {
            expires_at: Instant::now() + ttl,
            forced: false,
        }
    }

    fn is_over(&self) -> bool {
        self.forced || Instant::now() >= self.expires_at
    }
}

struct CodeGrant {
    open_id: String,
    scope: String,
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    life: Lifetime,
    used: bool,
}

/// Whether a token still works.
struct Validity {
    life: Lifetime,
    revoked: bool,
}

impl Validity {
    fn starting_now(ttl: Duration) -> Self {
        Self {
            life: Lifetime::starting_now(ttl),
            revoked: false,
        }
    }
}

/// Which tokens a scripted change applies to.
#[derive(Debug, Clone, Copy)]
enum TokenKind {
    Access,
    Refresh,
}

struct AccessGrant {
    open_id: String,
    scope: String,
    validity: Validity,
}

struct RefreshGrant {
    open_id: String,
    scope: String,
    generation: Generation,
    validity: Validity,
    used: bool,
}

struct Inner {
    users: HashMap<String, SimUser>,
    signed_in: Option<String>,
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    refresh_uses: HashMap<String, usize>,
    /// Refresh tokens spent successfully (kept as a count so benchmarks can
    /// poll it cheaply).
    refreshes_granted: usize,
    code_ttl: Duration,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            users: HashMap::new(),
            signed_in: None,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            refresh_uses: HashMap::new(),
            refreshes_granted: 0,
            code_ttl: CODE_TTL,
            access_ttl: ACCESS_TOKEN_TTL,
            refresh_ttl: REFRESH_TOKEN_TTL,
        }
    }
}

/// Tokens issued by one exchange or refresh.
pub(super) struct Issued {
    pub(super) access_token: String,
    pub(super) refresh_token: Option<String>,
    /// Seconds.
    pub(super) expires_in: u64,
    /// Seconds; meaningful only with a refresh token.
    pub(super) refresh_expires_in: u64,
    pub(super) scope: String,
}

/// The simulated user directory and the OAuth bookkeeping.
#[derive(Default)]
pub struct OAuthState {
    inner: Mutex<Inner>,
}

impl OAuthState {
    /// Add a user, or replace the one with the same `open_id`.
    pub fn add_user(&self, user: SimUser) {
        lock(&self.inner).users.insert(user.open_id.clone(), user);
    }

    /// Edit a user's profile in place; `false` if there is no such user.
    pub fn update_user(&self, open_id: &str, edit: impl FnOnce(&mut SimUser)) -> bool {
        match lock(&self.inner).users.get_mut(open_id) {
            Some(user) => {
                edit(user);
                true
            }
            None => false,
        }
    }

    /// The user's current profile.
    pub fn user(&self, open_id: &str) -> Option<SimUser> {
        lock(&self.inner).users.get(open_id).cloned()
    }

    /// The user the authorize page acts for, as if they were logged in to
    /// the accounts site in their browser.
    pub fn sign_in(&self, open_id: &str) {
        let mut inner = lock(&self.inner);
        ensure_user(&mut inner, open_id);
        inner.signed_in = Some(open_id.to_owned());
    }

    /// A live access token for `open_id`, as if they had just authorized
    /// (an unknown user is added with a derived profile): for seeding
    /// completed sessions without walking the OAuth flow for each user.
    pub fn grant_access_token(&self, open_id: &str) -> String {
        let mut inner = lock(&self.inner);
        ensure_user(&mut inner, open_id);
        issue_tokens(&mut inner, open_id, &default_scope(), Generation::V2, false).access_token
    }

    /// A live access token and refresh token of `generation` for
    /// `open_id`, as if they had just authorized through that generation's
    /// endpoint: for seeding sessions the refresher can refresh.
    pub fn grant_token_pair(&self, open_id: &str, generation: Generation) -> (String, String) {
        let mut inner = lock(&self.inner);
        ensure_user(&mut inner, open_id);
        let issued = issue_tokens(&mut inner, open_id, &default_scope(), generation, true);
        let refresh = issued.refresh_token.unwrap_or_default();
        (issued.access_token, refresh)
    }

    /// Every user access and refresh token issued so far, live or not: for
    /// checking that none of them leaked into a log.
    pub fn issued_tokens(&self) -> Vec<String> {
        let inner = lock(&self.inner);
        inner
            .access
            .keys()
            .chain(inner.refresh.keys())
            .cloned()
            .collect()
    }

    /// Lifetime of codes issued from now on.
    pub fn set_code_ttl(&self, ttl: Duration) {
        lock(&self.inner).code_ttl = ttl;
    }

    /// Lifetime of user access tokens issued from now on (also what
    /// `expires_in` reports, in whole seconds).
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        lock(&self.inner).access_ttl = ttl;
    }

    /// Lifetime of refresh tokens issued from now on.
    pub fn set_refresh_token_ttl(&self, ttl: Duration) {
        lock(&self.inner).refresh_ttl = ttl;
    }

    /// Expire every access token of `open_id` now (calls answer 99991677).
    pub fn expire_access_tokens(&self, open_id: &str) {
        self.change_tokens(open_id, TokenKind::Access, |v| v.life.forced = true);
    }

    /// Revoke every access token of `open_id` (calls answer 99991668).
    pub fn revoke_access_tokens(&self, open_id: &str) {
        self.change_tokens(open_id, TokenKind::Access, |v| v.revoked = true);
    }

    /// Expire every refresh token of `open_id` now (refresh answers 20037).
    pub fn expire_refresh_tokens(&self, open_id: &str) {
        self.change_tokens(open_id, TokenKind::Refresh, |v| v.life.forced = true);
    }

    /// Revoke every refresh token of `open_id` (refresh answers 20064).
    pub fn revoke_refresh_tokens(&self, open_id: &str) {
        self.change_tokens(open_id, TokenKind::Refresh, |v| v.revoked = true);
    }

    fn change_tokens(&self, open_id: &str, kind: TokenKind, change: impl Fn(&mut Validity)) {
        let mut inner = lock(&self.inner);
        let validities: Vec<&mut Validity> = match kind {
            TokenKind::Access => inner
                .access
                .values_mut()
                .filter(|g| g.open_id == open_id)
                .map(|g| &mut g.validity)
                .collect(),
            TokenKind::Refresh => inner
                .refresh
                .values_mut()
                .filter(|g| g.open_id == open_id)
                .map(|g| &mut g.validity)
                .collect(),
        };
        validities.into_iter().for_each(change);
    }

    /// The user a live access token belongs to.
    pub fn access_token_owner(&self, token: &str) -> Option<String> {
        let inner = lock(&self.inner);
        let grant = inner.access.get(token)?;
        let v = &grant.validity;
        (!v.revoked && !v.life.is_over()).then(|| grant.open_id.clone())
    }

    /// How many times this refresh token was presented (spent or refused).
    pub fn refresh_token_uses(&self, token: &str) -> usize {
        lock(&self.inner)
            .refresh_uses
            .get(token)
            .copied()
            .unwrap_or(0)
    }

    /// Every refresh token presented more than once.
    pub fn reused_refresh_tokens(&self) -> Vec<String> {
        lock(&self.inner)
            .refresh_uses
            .iter()
            .filter(|(_, uses)| **uses > 1)
            .map(|(token, _)| token.clone())
            .collect()
    }

    /// How many refresh tokens have been spent successfully.
    pub fn refreshes_granted(&self) -> usize {
        lock(&self.inner).refreshes_granted
    }

    /// A code for the signed-in user, bound to the authorize request's
    /// redirect URI and PKCE challenge; `None` when nobody is signed in.
    pub(super) fn authorize(
        &self,
        scope: &str,
        redirect_uri: &str,
        code_challenge: Option<&str>,
    ) -> Option<String> {
        let mut inner = lock(&self.inner);
        let open_id = inner.signed_in.clone()?;
        let life = Lifetime::starting_now(inner.code_ttl);
        Some(insert_code(
            &mut inner,
            &open_id,
            scope,
            Some(redirect_uri.to_owned()),
            code_challenge.map(str::to_owned),
            life,
        ))
    }

    /// Tokens for the user who just approved a device login on the
    /// accounts site: `approver`, or else whoever is signed in; `None` when
    /// nobody is.
    pub(super) fn grant_device_login(&self, scope: &str, approver: Option<&str>) -> Option<Issued> {
        let mut inner = lock(&self.inner);
        let open_id = match approver {
            Some(open_id) => open_id.to_owned(),
            None => inner.signed_in.clone()?,
        };
        ensure_user(&mut inner, &open_id);
        let offline = scope.split(' ').any(|s| s == "offline_access");
        Some(issue_tokens(
            &mut inner,
            &open_id,
            scope,
            Generation::Accounts,
            offline,
        ))
    }

    /// v2 exchange: the redirect URI and PKCE verifier must match the
    /// authorize request; a refresh token only for `offline_access`.
    pub(super) fn exchange_code_v2(
        &self,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<Issued, Reject> {
        let mut inner = lock(&self.inner);
        let (open_id, scope) = redeem_code(&mut inner, code, |grant| {
            check_binding(grant, redirect_uri, verifier)
        })?;
        let offline = scope.split(' ').any(|s| s == "offline_access");
        Ok(issue_tokens(
            &mut inner,
            &open_id,
            &scope,
            Generation::V2,
            offline,
        ))
    }

    /// Spend a refresh token of this generation and rotate.
    pub(super) fn refresh(&self, token: &str, generation: Generation) -> Result<Issued, Reject> {
        refresh(&mut lock(&self.inner), token, generation)
    }

    /// The profile `user_info` answers for a token: the user's, with the
    /// fields the token's scope allows.
    pub(super) fn profile(&self, token: &str) -> Result<Value, Reject> {
        let inner = lock(&self.inner);
        let grant = live_grant(&inner, token)?;
        inner
            .users
            .get(&grant.open_id)
            .map(|user| user.profile(&grant.scope))
            .ok_or_else(|| Reject::bad(codes::USER_ACCESS_TOKEN_INVALID, "user no longer exists"))
    }

    /// The `open_id` behind a user access token for a call that needs
    /// `scope`, or the platform's refusal: 99991679 naming the scope when
    /// the token lacks it.
    pub(super) fn authenticate_for(&self, token: &str, scope: &str) -> Result<String, Reject> {
        let inner = lock(&self.inner);
        let grant = live_grant(&inner, token)?;
        if !has_scope(&grant.scope, scope) {
            return Err(Reject::scope_not_granted(scope));
        }
        Ok(grant.open_id.clone())
    }

    /// The scope a live access token carries.
    pub fn access_token_scope(&self, token: &str) -> Option<String> {
        let inner = lock(&self.inner);
        live_grant(&inner, token).ok().map(|g| g.scope.clone())
    }
}

/// A live access grant, or the platform's refusal of the token.
fn live_grant<'a>(inner: &'a Inner, token: &str) -> Result<&'a AccessGrant, Reject> {
    match inner.access.get(token) {
        Some(grant) if grant.validity.revoked => Err(Reject::bad(
            codes::USER_ACCESS_TOKEN_INVALID,
            "Invalid access token for authorization (revoked)",
        )),
        Some(grant) if grant.validity.life.is_over() => Err(Reject::bad(
            codes::USER_ACCESS_TOKEN_EXPIRED,
            "The user access token has expired; refresh it",
        )),
        Some(grant) => Ok(grant),
        None => Err(Reject::bad(
            codes::USER_ACCESS_TOKEN_INVALID,
            "Invalid access token for authorization",
        )),
    }
}

fn ensure_user(inner: &mut Inner, open_id: &str) {
    inner
        .users
        .entry(open_id.to_owned())
        .or_insert_with(|| SimUser::new(open_id, "Sim User"));
}

fn insert_code(
    inner: &mut Inner,
    open_id: &str,
    scope: &str,
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    life: Lifetime,
) -> String {
    ensure_user(inner, open_id);
    let code = format!("sim-code-{}", uuid::Uuid::new_v4().simple());
    inner.codes.insert(
        code.clone(),
        CodeGrant {
            open_id: open_id.to_owned(),
            scope: scope.to_owned(),
            redirect_uri,
            code_challenge,
            life,
            used: false,
        },
    );
    code
}

/// Spend a code. `check` sees the grant first (v2 checks the redirect URI
/// and PKCE there); a refused code stays unspent.
fn redeem_code(
    inner: &mut Inner,
    code: &str,
    check: impl FnOnce(&CodeGrant) -> Result<(), Reject>,
) -> Result<(String, String), Reject> {
    let grant = inner
        .codes
        .get_mut(code)
        .ok_or_else(|| Reject::bad(codes::AUTH_CODE_INVALID, "authorization code not found"))?;
    if grant.used {
        return Err(Reject::bad(
            codes::AUTH_CODE_USED,
            "authorization code has already been used",
        ));
    }
    if grant.life.is_over() {
        return Err(Reject::bad(
            codes::AUTH_CODE_EXPIRED,
            "authorization code has expired",
        ));
    }
    check(grant)?;
    grant.used = true;
    Ok((grant.open_id.clone(), grant.scope.clone()))
}

fn issue_tokens(
    inner: &mut Inner,
    open_id: &str,
    scope: &str,
    generation: Generation,
    with_refresh: bool,
) -> Issued {
    let access_token = format!("u-sim{}", uuid::Uuid::new_v4().simple());
    inner.access.insert(
        access_token.clone(),
        AccessGrant {
            open_id: open_id.to_owned(),
            scope: scope.to_owned(),
            validity: Validity::starting_now(inner.access_ttl),
        },
    );
    let refresh_token = with_refresh.then(|| {
        let token = format!("ur-sim{}", uuid::Uuid::new_v4().simple());
        inner.refresh.insert(
            token.clone(),
            RefreshGrant {
                open_id: open_id.to_owned(),
                scope: scope.to_owned(),
                generation,
                validity: Validity::starting_now(inner.refresh_ttl),
                used: false,
            },
        );
        token
    });
    Issued {
        access_token,
        refresh_token,
        expires_in: inner.access_ttl.as_secs(),
        refresh_expires_in: inner.refresh_ttl.as_secs(),
        scope: scope.to_owned(),
    }
}

/// Spend a refresh token and rotate: a new access and refresh token.
fn refresh(inner: &mut Inner, token: &str, generation: Generation) -> Result<Issued, Reject> {
    let Some(grant) = inner.refresh.get_mut(token) else {
        return Err(Reject::bad(
            codes::REFRESH_TOKEN_INVALID,
            "refresh token is invalid",
        ));
    };
    *inner.refresh_uses.entry(token.to_owned()).or_default() += 1;
    let refusal = if grant.generation != generation {
        Some((
            codes::REFRESH_TOKEN_INVALID,
            "refresh token was issued by another endpoint family",
        ))
    } else if grant.used {
        Some((
            codes::REFRESH_TOKEN_USED,
            "refresh token has already been used",
        ))
    } else if grant.validity.revoked {
        Some((
            codes::REFRESH_TOKEN_REVOKED,
            "refresh token has been revoked",
        ))
    } else if grant.validity.life.is_over() {
        Some((codes::REFRESH_TOKEN_EXPIRED, "refresh token has expired"))
    } else {
        None
    };
    if let Some((code, msg)) = refusal {
        return Err(Reject::bad(code, msg));
    }
    grant.used = true;
    let (open_id, scope) = (grant.open_id.clone(), grant.scope.clone());
    inner.refreshes_granted += 1;
    Ok(issue_tokens(inner, &open_id, &scope, generation, true))
}

/// A code from the authorize page must come back with the same redirect
/// URI and a verifier matching its PKCE challenge.
fn check_binding(
    grant: &CodeGrant,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<(), Reject> {
    if let Some(bound) = &grant.redirect_uri {
        if redirect_uri != Some(bound.as_str()) {
            return Err(Reject::bad(
                codes::AUTH_GRANT_MISMATCH,
                "redirect_uri does not match",
            ));
        }
    }
    if let Some(challenge) = &grant.code_challenge {
        let computed = verifier.map(|v| URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())));
        if computed.as_deref() != Some(challenge.as_str()) {
            return Err(Reject::bad(
                codes::AUTH_GRANT_MISMATCH,
                "code_verifier does not match",
            ));
        }
    }
    Ok(())
}
