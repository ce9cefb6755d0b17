//! A simulated OAuth authorization server for the device-code login
//! (`lark-open-platform.md` §8): RFC 8414 discovery, RFC 7591 registration,
//! RFC 8628 device authorization and token polling, refresh with rotation,
//! and the `mcp_server/v1` token check.
//!
//! Its routes share the simulator's loopback HTTP listener, so the host a
//! test logs in to is `127.0.0.1:PORT`. Time is the real clock plus an
//! offset a test can [`advance`](DeviceServerState::advance), so expiry and
//! the poll-interval check are testable without waiting.
//!
//! Route names for [`Recorder::inject`](super::Recorder::inject) and
//! [`DeviceServerState::serve_garbage`]: `device_discovery`,
//! `device_registration`, `device_authorization`, `device_token`,
//! `device_mcp`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use rand::Rng;
use serde_json::{json, Value};

use super::state::lock;
use super::{fault_response, SimState};

pub const DISCOVERY_PATH: &str = "/.well-known/oauth-authorization-server";
pub const AUTHORIZE_PATH: &str = "/device-oauth/authorize";
pub const REGISTER_PATH: &str = "/device-oauth/register";
pub const DEVICE_AUTHORIZATION_PATH: &str = "/device-oauth/device_authorization";
pub const TOKEN_PATH: &str = "/device-oauth/token";
pub const VERIFY_PATH: &str = "/device-oauth/verify";
pub const MCP_PATH: &str = "/mcp_server/v1";

pub(super) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// `refresh_token_expires_in` of issued refresh tokens (7 days).
const REFRESH_TOKEN_LIFETIME_SECONDS: u64 = 604_800;
/// Letters that cannot spell words, as RFC 8628 §6.1 suggests for user codes.
const USER_CODE_LETTERS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Switches a test may flip before or during a flow.
#[derive(Debug, Clone)]
pub struct DeviceSimSettings {
    /// Leave `device_authorization_endpoint` out of the discovery document.
    pub omit_device_endpoint: bool,
    /// Answer `slow_down` to polls closer together than the interval.
    pub enforce_interval: bool,
    /// Answer in the `{code, data, msg}` envelope instead of flat fields.
    pub wrap_responses: bool,
    /// Issue a new refresh token on every refresh (the old one dies either way).
    pub rotate_refresh_tokens: bool,
    /// `expires_in` of device codes.
    pub device_code_lifetime: Duration,
    /// `interval` of device codes, in seconds.
    pub interval: u64,
    /// `expires_in` of access tokens.
    pub access_token_ttl: Duration,
    /// Make `mcp_server/v1` answer this status (e.g. 503) to everyone.
    pub mcp_failure: Option<u16>,
    /// The origin advertised in the discovery document and verification
    /// links, e.g. a TLS proxy in front of the simulator; by default the
    /// origin the request came to.
    pub public_base: Option<String>,
}

impl Default for DeviceSimSettings {
    fn default() -> Self {
        Self {
            omit_device_endpoint: false,
            enforce_interval: true,
            wrap_responses: false,
            rotate_refresh_tokens: true,
            device_code_lifetime: Duration::from_secs(600),
            interval: 5,
            access_token_ttl: Duration::from_secs(7200),
            mcp_failure: None,
            public_base: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GrantState {
    Pending,
    Approved,
    Denied,
    /// Tokens were handed out; the device code is spent.
    Issued,
}

struct Grant {
    device_code: String,
    user_code: String,
    client_id: String,
    issued_at: Instant,
    lifetime: Duration,
    interval: Duration,
    last_poll: Option<Instant>,
    state: GrantState,
    /// Scope asked for (Feishu's flow); echoed in the token answer.
    scope: Option<String>,
    /// The account that approved, when a test names one ([`DeviceServerState::approve_as`]).
    approved_by: Option<String>,
}

struct RefreshToken {
    client_id: String,
    spent: bool,
}

#[derive(Default)]
struct Book {
    settings: DeviceSimSettings,
    offset: Duration,
    issued: u64,
    clients: HashSet<String>,
    grants: Vec<Grant>,
    access: HashMap<String, Instant>,
    refresh: HashMap<String, RefreshToken>,
    refreshes: usize,
    spent_refresh_reuses: usize,
    garbage: HashMap<&'static str, usize>,
}

impl Book {
    fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    fn next(&mut self) -> u64 {
        self.issued += 1;
        self.issued
    }

    /// A fresh access token (and refresh token unless `keep_refresh`).
    fn issue_tokens(&mut self, client_id: &str, with_refresh: bool, scope: Option<&str>) -> Value {
        let n = self.next();
        let suffix: u32 = rand::thread_rng().gen();
        let access = format!("mat_{n:04}_{suffix:08x}");
        let expires_at = self.now() + self.settings.access_token_ttl;
        self.access.insert(access.clone(), expires_at);
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl.as_secs(),
        });
        if with_refresh {
            let refresh = format!("mrt_{n:04}_{suffix:08x}");
            self.refresh.insert(
                refresh.clone(),
                RefreshToken {
                    client_id: client_id.to_owned(),
                    spent: false,
                },
            );
            body["refresh_token"] = json!(refresh);
            body["refresh_token_expires_in"] = json!(REFRESH_TOKEN_LIFETIME_SECONDS);
        }
        if let Some(scope) = scope {
            body["scope"] = json!(scope);
        }
        body
    }
}

/// A device grant just created, as the device authorization answer shows it.
pub(super) struct NewGrant {
    pub device_code: String,
    pub user_code: String,
    pub lifetime: Duration,
    pub interval: u64,
}

impl NewGrant {
    /// The RFC 8628 answer, with verification links under `base`.
    pub(super) fn to_json(&self, base: &str) -> Value {
        json!({
            "device_code": self.device_code,
            "user_code": self.user_code,
            "verification_uri": format!("{base}{VERIFY_PATH}"),
            "verification_uri_complete": format!("{base}{VERIFY_PATH}?user_code={}", self.user_code),
            "expires_in": self.lifetime.as_secs(),
            "interval": self.interval,
        })
    }
}

/// State of the simulated authorization server.
#[derive(Default)]
pub struct DeviceServerState {
    book: Mutex<Book>,
}

impl DeviceServerState {
    /// Change the switches.
    pub fn configure(&self, change: impl FnOnce(&mut DeviceSimSettings)) {
        change(&mut lock(&self.book).settings);
    }

    /// Move the simulated clock forward.
    pub fn advance(&self, by: Duration) {
        lock(&self.book).offset += by;
    }

    /// The user approves `user_code`; false if no pending code has it.
    /// On Feishu's flow the tokens are for whoever is signed in
    /// ([`OAuthState::sign_in`](super::oauth::OAuthState::sign_in)).
    pub fn approve(&self, user_code: &str) -> bool {
        self.decide(user_code, GrantState::Approved, None)
    }

    /// The Feishu account `open_id` opens the verification link and
    /// approves `user_code`: the tokens the poll then yields are theirs,
    /// whoever the code was meant for (RFC 8628 §3.3: the code names the
    /// request, the approving user is whoever is signed in at the page).
    /// False if no pending code has it.
    pub fn approve_as(&self, user_code: &str, open_id: &str) -> bool {
        self.decide(user_code, GrantState::Approved, Some(open_id))
    }

    /// The user denies `user_code`; false if no pending code has it.
    pub fn deny(&self, user_code: &str) -> bool {
        self.decide(user_code, GrantState::Denied, None)
    }

    fn decide(&self, user_code: &str, verdict: GrantState, by: Option<&str>) -> bool {
        let mut book = lock(&self.book);
        let now = book.now();
        // An expired code cannot be decided any more (RFC 8628 §3.5).
        match book.grants.iter_mut().find(|g| {
            g.user_code == user_code
                && g.state == GrantState::Pending
                && now < g.issued_at + g.lifetime
        }) {
            Some(grant) => {
                grant.state = verdict;
                grant.approved_by = by.map(str::to_owned);
                true
            }
            None => false,
        }
    }

    /// Who approved the grant of `device_code`, when a test named them.
    pub(super) fn approver(&self, device_code: &str) -> Option<String> {
        lock(&self.book)
            .grants
            .iter()
            .find(|g| g.device_code == device_code)
            .and_then(|g| g.approved_by.clone())
    }

    /// The user codes of every device code issued so far, oldest first.
    pub fn user_codes(&self) -> Vec<String> {
        lock(&self.book)
            .grants
            .iter()
            .map(|g| g.user_code.clone())
            .collect()
    }

    /// The user code of the newest device code.
    pub fn last_user_code(&self) -> Option<String> {
        lock(&self.book).grants.last().map(|g| g.user_code.clone())
    }

    /// Answer the next `times` calls of `route` with an HTML 502 page.
    pub fn serve_garbage(&self, route: &'static str, times: usize) {
        *lock(&self.book).garbage.entry(route).or_default() += times;
    }

    /// Successful refresh grants so far.
    pub fn refreshes(&self) -> usize {
        lock(&self.book).refreshes
    }

    /// Refresh attempts that presented an already spent refresh token.
    pub fn spent_refresh_reuses(&self) -> usize {
        lock(&self.book).spent_refresh_reuses
    }

    /// Is `token` a live access token?
    pub fn is_valid_access_token(&self, token: &str) -> bool {
        let book = lock(&self.book);
        book.access.get(token).is_some_and(|exp| *exp > book.now())
    }

    /// Invalidate every access token (refresh tokens stay valid).
    pub fn revoke_access_tokens(&self) {
        lock(&self.book).access.clear();
    }

    /// Invalidate every refresh token.
    pub fn revoke_refresh_tokens(&self) {
        for token in lock(&self.book).refresh.values_mut() {
            token.spent = true;
        }
    }

    /// Start a pending device grant for `client_id`.
    pub(super) fn new_grant(&self, client_id: &str, scope: Option<String>) -> NewGrant {
        let mut book = lock(&self.book);
        let n = book.next();
        let mut rng = rand::thread_rng();
        let letters: String = (0..4)
            .map(|_| char::from(USER_CODE_LETTERS[rng.gen_range(0..USER_CODE_LETTERS.len())]))
            .collect();
        let code = NewGrant {
            device_code: format!("dc_{n:04}_{:016x}", rng.gen::<u64>()),
            user_code: format!("{letters}-{:04}", n % 10_000),
            lifetime: book.settings.device_code_lifetime,
            interval: book.settings.interval,
        };
        let issued_at = book.now();
        book.grants.push(Grant {
            device_code: code.device_code.clone(),
            user_code: code.user_code.clone(),
            client_id: client_id.to_owned(),
            issued_at,
            lifetime: code.lifetime,
            interval: Duration::from_secs(code.interval),
            last_poll: None,
            state: GrantState::Pending,
            scope,
            approved_by: None,
        });
        code
    }

    fn take_garbage(&self, route: &'static str) -> bool {
        let mut book = lock(&self.book);
        match book.garbage.get_mut(route) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}

/// Register the routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(DISCOVERY_PATH, web::get().to(discovery))
        .route(REGISTER_PATH, web::post().to(register))
        .route(
            DEVICE_AUTHORIZATION_PATH,
            web::post().to(device_authorization),
        )
        .route(TOKEN_PATH, web::post().to(token))
        .route(MCP_PATH, web::post().to(mcp));
}

/// Record the request, then answer a queued fault or garbage if any.
pub(super) async fn intercept(
    state: &SimState,
    req: &HttpRequest,
    body: &[u8],
    route: &'static str,
) -> Option<HttpResponse> {
    state.recorder.record(req, body);
    if let Some(r) = fault_response(state, route).await {
        return Some(r);
    }
    state.device.take_garbage(route).then(|| {
        HttpResponse::BadGateway()
            .content_type("text/html; charset=utf-8")
            .body("<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>")
    })
}

pub(super) fn origin(state: &SimState, req: &HttpRequest) -> String {
    let configured = lock(&state.device.book).settings.public_base.clone();
    configured.unwrap_or_else(|| {
        let info = req.connection_info();
        format!("{}://{}", info.scheme(), info.host())
    })
}

/// A JSON answer, wrapped in `{code, data, msg}` when the switch is on.
fn answer(state: &SimState, status: u16, body: Value) -> HttpResponse {
    let wrap = lock(&state.device.book).settings.wrap_responses;
    let body = if wrap {
        json!({"code": if status < 300 { 0 } else { i64::from(status) }, "msg": if status < 300 { "success" } else { "error" }, "data": body})
    } else {
        body
    };
    let status =
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    HttpResponse::build(status).json(body)
}

fn oauth_error(state: &SimState, error: &str) -> HttpResponse {
    answer(state, 400, json!({ "error": error }))
}

pub(super) fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// Route `device_discovery`.
async fn discovery(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    if let Some(r) = intercept(&state, &req, &body, "device_discovery").await {
        return r;
    }
    let base = origin(&state, &req);
    let mut doc = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "registration_endpoint": format!("{base}{REGISTER_PATH}"),
        "device_authorization_endpoint": format!("{base}{DEVICE_AUTHORIZATION_PATH}"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
    });
    if lock(&state.device.book).settings.omit_device_endpoint {
        if let Some(map) = doc.as_object_mut() {
            map.remove("device_authorization_endpoint");
        }
    }
    HttpResponse::Ok().json(doc)
}

/// Route `device_registration`: any JSON body with `client_name` and
/// `token_endpoint_auth_method: none` gets a `cid_…` client id.
async fn register(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    if let Some(r) = intercept(&state, &req, &body, "device_registration").await {
        return r;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let valid = request.get("client_name").and_then(Value::as_str).is_some()
        && request
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
            == Some("none");
    if !valid {
        return answer(&state, 400, json!({"error": "invalid_client_metadata"}));
    }
    let client_id = {
        let mut book = lock(&state.device.book);
        let id = format!("cid_{:06}", book.next());
        book.clients.insert(id.clone());
        id
    };
    answer(
        &state,
        201,
        json!({"client_id": client_id, "client_name": request["client_name"], "token_endpoint_auth_method": "none"}),
    )
}

/// Route `device_authorization`.
async fn device_authorization(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    if let Some(r) = intercept(&state, &req, &body, "device_authorization").await {
        return r;
    }
    let base = origin(&state, &req);
    let client_id = form(&body).remove("client_id").unwrap_or_default();
    let known = lock(&state.device.book).clients.contains(&client_id);
    if !known {
        return oauth_error(&state, "invalid_client");
    }
    let code = state.device.new_grant(&client_id, None);
    answer(&state, 200, code.to_json(&base))
}

/// Route `device_token`: the device-code poll and the refresh grant.
async fn token(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    if let Some(r) = intercept(&state, &req, &body, "device_token").await {
        return r;
    }
    let mut form = form(&body);
    let client_id = form.remove("client_id").unwrap_or_default();
    let (status, body) = match form.get("grant_type").map(String::as_str) {
        Some(DEVICE_CODE_GRANT) => poll(
            &state.device,
            &client_id,
            form.get("device_code").map_or("", String::as_str),
        ),
        Some("refresh_token") => refresh(
            &state.device,
            &client_id,
            form.get("refresh_token").map_or("", String::as_str),
        ),
        _ => (400, json!({"error": "unsupported_grant_type"})),
    };
    answer(&state, status, body)
}

/// One device-code poll: `(status, body)`.
pub(super) fn poll(device: &DeviceServerState, client_id: &str, device_code: &str) -> (u16, Value) {
    let mut book = lock(&device.book);
    let now = book.now();
    let enforce = book.settings.enforce_interval;
    let Some(index) = book
        .grants
        .iter()
        .position(|g| g.device_code == device_code)
    else {
        return (400, json!({"error": "invalid_grant"}));
    };
    let grant = &mut book.grants[index];
    if grant.client_id != client_id {
        return (400, json!({"error": "invalid_client"}));
    }
    if grant.state == GrantState::Issued {
        return (400, json!({"error": "invalid_grant"}));
    }
    if now >= grant.issued_at + grant.lifetime {
        return (400, json!({"error": "expired_token"}));
    }
    let too_soon = grant
        .last_poll
        .is_some_and(|last| now < last + grant.interval);
    grant.last_poll = Some(now);
    if enforce && too_soon {
        grant.interval += Duration::from_secs(5);
        return (400, json!({"error": "slow_down"}));
    }
    match grant.state {
        GrantState::Pending => (400, json!({"error": "authorization_pending"})),
        GrantState::Denied => (400, json!({"error": "access_denied"})),
        GrantState::Approved | GrantState::Issued => {
            grant.state = GrantState::Issued;
            let scope = grant.scope.clone();
            (200, book.issue_tokens(client_id, true, scope.as_deref()))
        }
    }
}

fn refresh(device: &DeviceServerState, client_id: &str, refresh_token: &str) -> (u16, Value) {
    let mut book = lock(&device.book);
    let spent = match book.refresh.get_mut(refresh_token) {
        None => return (400, json!({"error": "invalid_grant"})),
        Some(t) if t.client_id != client_id => return (400, json!({"error": "invalid_client"})),
        Some(t) => std::mem::replace(&mut t.spent, true),
    };
    if spent {
        book.spent_refresh_reuses += 1;
        return (
            400,
            json!({"error": "invalid_grant", "error_description": "refresh token already used"}),
        );
    }
    book.refreshes += 1;
    let rotate = book.settings.rotate_refresh_tokens;
    let body = book.issue_tokens(client_id, rotate, None);
    if !rotate {
        // Without rotation the presented refresh token stays usable.
        if let Some(t) = book.refresh.get_mut(refresh_token) {
            t.spent = false;
        }
    }
    (200, body)
}

/// Route `device_mcp`: JSON-RPC `tools/list` for live access tokens only.
async fn mcp(req: HttpRequest, body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    if let Some(r) = intercept(&state, &req, &body, "device_mcp").await {
        return r;
    }
    if let Some(status) = lock(&state.device.book).settings.mcp_failure {
        let status = actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
        return HttpResponse::build(status).json(json!({"error": "simulated failure"}));
    }
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !state.device.is_valid_access_token(token) {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_token"}));
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    if request.get("method").and_then(Value::as_str) != Some("tools/list") {
        return HttpResponse::Ok().json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}}));
    }
    HttpResponse::Ok().json(json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {"tools": [{"name": "list_workitems", "description": "List work items", "inputSchema": {"type": "object", "properties": {}}}]},
    }))
}
