//! The OAuth redirect flow (`OAUTH_REDIRECT_URI` set), end to end against
//! the simulator, on each backend: PKCE and a hashed, single-use `state`;
//! callbacks that must be refused without spoiling the victim's session;
//! the scopes a token carries, and the AI call's answer when one is
//! missing; each token refreshing at the endpoint family that issued it.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use lark_service::auth::vault::{SealedColumn, Slot};
use lark_service::db::models::user_auth_session;
use lark_service::domain::Scopes;
use lark_service::sim::oauth::SimUser;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::support::{
    backends, in_seconds, metric_value, seed_refreshable, sim_user, spawn_app_with, test_vault,
    wait_for, TestApp, FAST,
};

const ALICE: &str = "ou_alice0000000000000000000001";
const MALLORY: &str = "ou_mallory00000000000000000001";
/// Where the authorize page sends the browser. The platform never calls
/// it; the test plays the browser and brings the query to the service.
const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";
const TIMEOUT: Duration = Duration::from_secs(20);

async fn redirect_app(extra: &[(&str, &str)], db: crate::support::TestDb) -> TestApp {
    let mut pairs = vec![("OAUTH_REDIRECT_URI", REDIRECT)];
    pairs.extend_from_slice(extra);
    let app = spawn_app_with(db, &pairs).await;
    for (open_id, name) in [(ALICE, "Alice"), (MALLORY, "Mallory")] {
        let mut user = SimUser::new(open_id, name);
        user.email = Some(format!("{}@example.com", name.to_lowercase()));
        app.sim.state().open_api.oauth.add_user(user);
    }
    app
}

/// Send `open_id` a card; its session id and the URL its button opens.
async fn send_card(app: &TestApp, open_id: &str) -> (String, url::Url) {
    let resp = app
        .admin_post("/admin/auth-cards", json!({"user_id": open_id}))
        .await;
    assert_eq!(resp.status(), 201);
    let sent: Value = resp.json().await.unwrap();
    let card = app
        .sim
        .state()
        .open_api
        .im
        .message(sent["message_id"].as_str().unwrap())
        .unwrap();
    let url = find_open_url(&card.content).expect("the button opens the authorize page");
    (
        sent["session_id"].as_str().unwrap().to_owned(),
        url::Url::parse(&url).unwrap(),
    )
}

fn find_open_url(card: &Value) -> Option<String> {
    match card {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("open_url") {
                return map
                    .get("default_url")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            map.values().find_map(find_open_url)
        }
        Value::Array(items) => items.iter().find_map(find_open_url),
        _ => None,
    }
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// `user`, signed in to the accounts site in their browser, opens
/// `authorize` and approves; the query the page redirects back with.
async fn approve_as(app: &TestApp, user: &str, authorize: &url::Url) -> String {
    app.sim.state().open_api.oauth.sign_in(user);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser.get(authorize.as_str()).send().await.unwrap();
    assert_eq!(page.status(), 302);
    let location = url::Url::parse(page.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT), "{location}");
    location.query().unwrap().to_owned()
}

/// The browser arrives at the service's callback with `query`.
async fn callback(app: &TestApp, query: &str) -> (u16, Value) {
    let resp = app.get(&format!("/oauth/callback?{query}")).await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

async fn session(app: &TestApp, id: &str) -> Value {
    app.admin_get(&format!("/admin/sessions/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// The stored redirect secrets of the session `state` belongs to.
async fn stored_grant(app: &TestApp, state: &str) -> Option<(String, Option<String>)> {
    let hash = hex::encode(Sha256::digest(state.as_bytes()));
    app.app_db
        .read(move |c| user_auth_session::find_by_state_hash(c, &hash))
        .await
        .unwrap()
        .map(|(row, verifier)| (row.session_id, verifier))
}

/// The refresh token stored for `open_id`'s latest session, opened.
async fn stored_refresh_token(app: &TestApp, open_id: &str) -> String {
    let row = app.session_of(open_id).await;
    let slot = Slot::new(SealedColumn::UserRefreshToken, &row.session_id);
    test_vault()
        .open(
            slot,
            row.refresh_token_enc.as_deref().expect("a refresh token"),
        )
        .expect("the token opens")
}

fn default_scopes() -> String {
    let raw = lark_service::config::defaults().unwrap();
    Scopes::parse(&raw["OAUTH_SCOPES"]).unwrap().to_param()
}

#[actix_rt::test]
async fn the_redirect_flow_completes_with_pkce_and_a_hashed_single_use_state() {
    for db in backends() {
        let backend = db.backend();
        let app = redirect_app(&[], db).await;
        let (session_id, authorize) = send_card(&app, ALICE).await;
        let pending = session(&app, &session_id).await;
        assert_eq!(pending["state"], "pending");
        assert_eq!(pending["auth_method"], "oauth_redirect");

        // The button opens the authorize page directly, with everything.
        let q = query(&authorize);
        assert_eq!(authorize.path(), "/open-apis/authen/v1/authorize");
        assert_eq!(q["client_id"], lark_service::sim::SIM_APP_ID);
        assert_eq!(q["redirect_uri"], REDIRECT);
        assert_eq!(q["scope"], default_scopes());
        assert_eq!(q["code_challenge_method"], "S256");
        let state = q["state"].clone();
        assert_ne!(
            state, session_id,
            "{backend}: the state is not the session id"
        );
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&state).unwrap().len(),
            32,
            "256 bits"
        );
        // Stored hashed, beside the sealed verifier of the challenge.
        let (found, sealed) = stored_grant(&app, &state).await.expect("stored by hash");
        assert_eq!(found, session_id);
        let sealed = sealed.expect("the verifier is kept");
        let slot = Slot::new(SealedColumn::PkceVerifier, &session_id);
        let verifier = test_vault().open(slot, &sealed).unwrap();
        assert!(!sealed.contains(&verifier));
        assert_eq!(
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
            q["code_challenge"]
        );

        let back = approve_as(&app, ALICE, &authorize).await;
        let (status, page) = callback(&app, &back).await;
        assert_eq!(status, 200, "{backend}: {page}");
        assert!(page.as_str().unwrap().contains("Authorized as Alice"));

        // v2 exchanged the code with the verifier (the simulator checks it
        // against the challenge) and the redirect URI.
        let exchange = app
            .sim
            .recorder()
            .requests_to("/authen/v2/oauth/token")
            .into_iter()
            .map(|r| r.json())
            .find(|b| b["grant_type"] == "authorization_code")
            .expect("a code exchange");
        assert_eq!(exchange["code_verifier"], verifier.as_str());
        assert_eq!(exchange["redirect_uri"], REDIRECT);

        let done = session(&app, &session_id).await;
        assert_eq!(done["state"], "completed", "{backend}: {done}");
        assert_eq!(done["auth_method"], "oauth_redirect");
        assert_eq!(done["email"], "alice@example.com");
        // The token carries OAUTH_SCOPES, and the session says so.
        assert_eq!(done["scope"], default_scopes());
        let token = app.stored_access_token(ALICE).await;
        assert_eq!(
            app.sim.state().open_api.oauth.access_token_scope(&token),
            Some(default_scopes())
        );
        assert!(
            stored_grant(&app, &state).await.is_none(),
            "{backend}: completion spends the state and drops the verifier"
        );

        // The same callback again: refused, the session stays as it is.
        let (status, body) = callback(&app, &back).await;
        assert_eq!(status, 400, "{backend}: {body}");
        assert_eq!(body["error"]["code"], "unknown_state");
        assert_eq!(session(&app, &session_id).await["state"], "completed");
        let metrics = app.metrics().await;
        assert!(
            metric_value(&metrics, "lark_auth_failed_total{reason=\"unknown_state\"}") >= Some(1.0),
            "{backend}"
        );
    }
}

#[actix_rt::test]
async fn refused_callbacks_leave_the_victims_session_pending() {
    for db in backends() {
        let backend = db.backend();
        let app = redirect_app(&[], db).await;
        let (session_id, authorize) = send_card(&app, ALICE).await;
        let state = query(&authorize)["state"].clone();
        let still_pending = || async {
            let s = session(&app, &session_id).await;
            assert_eq!(s["state"], "pending", "{backend}: {s}");
            assert!(s["error"].is_null(), "{backend}: {s}");
        };

        // Malformed, unknown, or without a code.
        let unknown = URL_SAFE_NO_PAD.encode([7u8; 32]);
        for (q, status, code) in [
            ("code=x&state=not-ours".to_owned(), 400, "bad_state"),
            (session_id_state(&session_id), 400, "bad_state"),
            (format!("code=x&state={unknown}"), 400, "unknown_state"),
            (format!("state={state}"), 400, "missing_code"),
            (
                format!("error=access_denied&state={state}"),
                400,
                "authorization_declined",
            ),
        ] {
            let (got, body) = callback(&app, &q).await;
            assert_eq!(
                (got, body["error"]["code"].as_str()),
                (status, Some(code)),
                "{backend}: {q}"
            );
        }
        still_pending().await;

        // Another account opens the victim's link and approves it: its code
        // is for Mallory, so nothing is stored for anyone.
        let foreign = approve_as(&app, MALLORY, &authorize).await;
        let (got, body) = callback(&app, &foreign).await;
        assert_eq!(got, 409, "{backend}: {body}");
        assert_eq!(body["error"]["code"], "wrong_user");
        still_pending().await;

        // That callback replayed: its code is spent.
        let (got, body) = callback(&app, &foreign).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (400, Some("exchange_failed")),
            "{backend}: {body}"
        );
        still_pending().await;

        // A code from another authorization (another PKCE challenge) with
        // the victim's state: the verifier does not match it.
        let mut injected = authorize.clone();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(b"someone else's verifier"));
        let pairs: Vec<(String, String)> = query(&authorize)
            .into_iter()
            .map(|(k, v)| {
                if k == "code_challenge" {
                    (k, challenge.clone())
                } else {
                    (k, v)
                }
            })
            .collect();
        injected.query_pairs_mut().clear().extend_pairs(pairs);
        let (got, body) = callback(&app, &approve_as(&app, ALICE, &injected).await).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (400, Some("exchange_failed")),
            "{backend}: {body}"
        );
        still_pending().await;

        // None of it spoiled the link: Alice approves and is authorized.
        let (got, body) = callback(&app, &approve_as(&app, ALICE, &authorize).await).await;
        assert_eq!(got, 200, "{backend}: {body}");
        let done = session(&app, &session_id).await;
        assert_eq!(done["state"], "completed");
        assert_eq!(done["open_id"], ALICE);
        let metrics = app.metrics().await;
        assert!(
            metric_value(&metrics, "lark_auth_failed_total{reason=\"wrong_user\"}") >= Some(1.0),
            "{backend}"
        );
    }
}

/// A callback whose `state` is the session id, as a forger who read a log
/// line would send it.
fn session_id_state(session_id: &str) -> String {
    format!("code=x&state={session_id}")
}

#[actix_rt::test]
async fn a_scope_the_user_did_not_grant_answers_scope_missing_and_requires_reauth() {
    for db in backends() {
        let backend = db.backend();
        let mut extra = FAST.to_vec();
        extra.extend([
            (
                "OAUTH_SCOPES",
                "contact:user.base:readonly contact:user.email:readonly",
            ),
            ("TOKEN_REFRESH_SEND_AUTH_CARD", "true"),
        ]);
        let app = redirect_app(&extra, db).await;
        let (session_id, authorize) = send_card(&app, ALICE).await;
        let (status, _) = callback(&app, &approve_as(&app, ALICE, &authorize).await).await;
        assert_eq!(status, 200);
        assert_eq!(
            session(&app, &session_id).await["scope"],
            "contact:user.base:readonly contact:user.email:readonly offline_access"
        );

        let series = "lark_apaas_requests_total{outcome=\"scope_missing\"}";
        let before = metric_value(&app.metrics().await, series).unwrap_or(0.0);
        let resp = app.ask_ai(ALICE, "What is 2+2?").await;
        assert_eq!(resp.status(), 409, "{backend}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "scope_missing", "{backend}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("aily:session:write")
                && message.contains("send-auth-card")
                && message.contains("OAUTH_SCOPES"),
            "{backend}: {message}"
        );

        let s = session(&app, &session_id).await;
        assert_eq!(s["state"], "reauth_required", "{backend}: {s}");
        assert!(
            s["error"].as_str().unwrap().contains("aily:session:write"),
            "{s}"
        );
        // A new card goes out to Alice.
        let im = &app.sim.state().open_api.im;
        wait_for("a new authorization card", TIMEOUT, || async {
            (im.messages()
                .iter()
                .filter(|m| m.receive_id == ALICE)
                .count()
                == 2)
                .then_some(())
        })
        .await;
        let metrics = app.metrics().await;
        assert_eq!(
            metric_value(&metrics, series),
            Some(before + 1.0),
            "{backend}"
        );
    }
}

#[actix_rt::test]
async fn each_token_refreshes_at_the_endpoint_family_that_issued_it() {
    for db in backends() {
        let backend = db.backend();
        let app = redirect_app(FAST, db).await;
        let oauth = &app.sim.state().open_api.oauth;
        // A card session from the device flow, due now.
        let bob = sim_user("family", 1, "Bob");
        seed_refreshable(&app, vec![bob.clone()], in_seconds(30));
        let bob_refresh = stored_refresh_token(&app, &bob.open_id).await;
        // A redirect session whose token lives a minute: due at once.
        oauth.set_access_token_ttl(Duration::from_secs(60));
        let (_, authorize) = send_card(&app, ALICE).await;
        let (status, _) = callback(&app, &approve_as(&app, ALICE, &authorize).await).await;
        assert_eq!(status, 200);
        let alice_refresh = stored_refresh_token(&app, ALICE).await;

        let presented = |path: &'static str| {
            app.sim
                .recorder()
                .requests_to(path)
                .into_iter()
                .map(|r| r.json())
                .filter(|b| b["grant_type"] == "refresh_token")
                .filter_map(|b| b["refresh_token"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        wait_for("both refreshes", TIMEOUT, || async {
            (oauth.refresh_token_uses(&bob_refresh) == 1
                && oauth.refresh_token_uses(&alice_refresh) == 1)
                .then_some(())
        })
        .await;
        let accounts = presented("/oauth/v3/token");
        let v2 = presented("/authen/v2/oauth/token");
        assert!(
            accounts.contains(&bob_refresh) && !v2.contains(&bob_refresh),
            "{backend}"
        );
        assert!(
            v2.contains(&alice_refresh) && !accounts.contains(&alice_refresh),
            "{backend}"
        );
        // The accounts host got larksuite/cli's JSON body.
        let sent = app
            .sim
            .recorder()
            .requests_to("/oauth/v3/token")
            .into_iter()
            .find(|r| r.json()["refresh_token"] == bob_refresh.as_str())
            .unwrap();
        assert_eq!(
            sent.json(),
            json!({"grant_type": "refresh_token", "refresh_token": bob_refresh, "client_id": lark_service::sim::SIM_APP_ID, "client_secret": lark_service::sim::SIM_APP_SECRET})
        );
        assert_eq!(
            oauth.reused_refresh_tokens(),
            Vec::<String>::new(),
            "{backend}"
        );
        wait_for("both new pairs stored", TIMEOUT, || async {
            (stored_refresh_token(&app, &bob.open_id).await != bob_refresh
                && stored_refresh_token(&app, ALICE).await != alice_refresh)
                .then_some(())
        })
        .await;
    }
}
