//! The clients against the simulated platform: every API, its failure
//! answers, and bodies no well-behaved server would send.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::aily_api::{assistant_reply, RunStatus};
use super::auth_api::{AuthorizeRequest, PkceVerifier, RedirectState, TokenFamily, UserToken};
use super::im_api::ReceiveIdType;
use super::{codes, LarkClient, LarkError};
use crate::auth::card;
use crate::domain::BaseUrl;
use crate::domain::Scopes;
use crate::sim::oauth::{default_scope, Generation, SimUser};
use crate::sim::{Fault, Simulator, SIM_APP_ID, SIM_APP_SECRET};

const ADA: &str = "ou_ada0001";
const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

fn client_for(base: &str) -> LarkClient {
    let base = BaseUrl::parse(base).unwrap();
    LarkClient::new(base.clone(), base).unwrap()
}

fn start() -> (Simulator, LarkClient) {
    let sim = Simulator::start().unwrap();
    let client = client_for(sim.base_url());
    sim.state()
        .open_api
        .oauth
        .add_user(SimUser::new(ADA, "Ada Lovelace"));
    (sim, client)
}

async fn tenant_token(client: &LarkClient) -> String {
    client
        .tenant_access_token(SIM_APP_ID, SIM_APP_SECRET)
        .await
        .unwrap()
        .token
}

/// The code the authorize page hands the browser of whoever is signed in,
/// and the `state` it came back with.
async fn authorize(client: &LarkClient, scopes: &str, verifier: &PkceVerifier) -> (String, String) {
    let state = RedirectState::generate();
    let url = client.authorize_url(&AuthorizeRequest {
        app_id: SIM_APP_ID,
        redirect_uri: REDIRECT,
        scopes: &Scopes::parse(scopes).unwrap(),
        state: &state,
        pkce: verifier,
    });
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 302);
    let location = url::Url::parse(page.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT));
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["state"], state.as_str());
    (query["code"].clone(), query["state"].clone())
}

/// A user token for `open_id` through the redirect flow, with `scopes`.
async fn redirect_token(
    sim: &Simulator,
    client: &LarkClient,
    open_id: &str,
    scopes: &str,
) -> UserToken {
    sim.state().open_api.oauth.sign_in(open_id);
    let verifier = PkceVerifier::generate();
    let (code, _) = authorize(client, scopes, &verifier).await;
    client
        .exchange_code_v2(SIM_APP_ID, SIM_APP_SECRET, &code, REDIRECT, &verifier)
        .await
        .unwrap()
}

/// A user token for Ada with the service's default scopes.
async fn user_token(sim: &Simulator, client: &LarkClient) -> UserToken {
    redirect_token(sim, client, ADA, &default_scope()).await
}

fn api_code(err: &LarkError) -> i64 {
    match err {
        LarkError::Api { code, .. } => *code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn app_and_tenant_tokens_are_fetched() {
    let (sim, client) = start();
    let tenant = client
        .tenant_access_token(SIM_APP_ID, SIM_APP_SECRET)
        .await
        .unwrap();
    assert!(tenant.token.starts_with("t-"));
    assert_eq!(tenant.expire, Duration::from_secs(7200));
    let app = client
        .app_access_token(SIM_APP_ID, SIM_APP_SECRET)
        .await
        .unwrap();
    assert!(app.token.starts_with("a-"));

    let sent = &sim.recorder().requests_to("/tenant_access_token/internal")[0];
    assert_eq!(
        sent.json(),
        json!({"app_id": SIM_APP_ID, "app_secret": SIM_APP_SECRET})
    );
    assert!(sent
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
}

#[tokio::test]
async fn wrong_credentials_are_an_api_error() {
    let (_sim, client) = start();
    let err = client
        .tenant_access_token(SIM_APP_ID, "wrong")
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), codes::APP_CREDENTIALS_INVALID);
    assert!(!err.is_transient());
    assert!(err.log_id().is_some_and(|id| id.starts_with("sim")));
}

#[tokio::test]
async fn rate_limits_carry_the_reset_time() {
    let (sim, client) = start();
    sim.recorder().inject(
        "tenant_access_token",
        Fault::RateLimit { reset_seconds: 3 },
        1,
    );
    let err = client
        .tenant_access_token(SIM_APP_ID, SIM_APP_SECRET)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LarkError::RateLimited { retry_after } if retry_after == Duration::from_secs(3))
    );
    assert!(err.is_transient());
    // The fault was for one call only.
    assert!(client
        .tenant_access_token(SIM_APP_ID, SIM_APP_SECRET)
        .await
        .is_ok());
}

#[tokio::test]
async fn redirect_flow_exchanges_through_v2_with_pkce() {
    let (sim, client) = start();
    sim.state().open_api.oauth.sign_in(ADA);
    let verifier = PkceVerifier::generate();
    let (code, _) = authorize(&client, "contact:user.base:readonly", &verifier).await;
    let code = code.as_str();

    let wrong = PkceVerifier::generate();
    let err = client
        .exchange_code_v2(SIM_APP_ID, SIM_APP_SECRET, code, REDIRECT, &wrong)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), codes::AUTH_GRANT_MISMATCH);
    let err = client
        .exchange_code_v2(
            SIM_APP_ID,
            SIM_APP_SECRET,
            code,
            "http://127.0.0.1:9/other",
            &verifier,
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), codes::AUTH_GRANT_MISMATCH);

    let token = client
        .exchange_code_v2(SIM_APP_ID, SIM_APP_SECRET, code, REDIRECT, &verifier)
        .await
        .unwrap();
    assert!(
        token.refresh_token.is_some(),
        "offline_access was requested"
    );
    assert_eq!(
        token.scope.as_deref(),
        Some("contact:user.base:readonly offline_access")
    );
    let sent = &sim.recorder().requests_to("/v2/oauth/token")[2];
    assert_eq!(sent.bearer(), None);
    assert_eq!(sent.json()["code_verifier"], verifier.as_str());

    let err = client
        .exchange_code_v2(SIM_APP_ID, SIM_APP_SECRET, code, REDIRECT, &verifier)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), codes::AUTH_CODE_USED);
    let err = client
        .exchange_code_v2(SIM_APP_ID, "wrong", code, REDIRECT, &verifier)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), codes::OAUTH_INVALID_CLIENT);
}

#[tokio::test]
async fn authorize_page_without_a_signed_in_user_shows_a_login_page() {
    let (_sim, client) = start();
    let url = client.authorize_url(&AuthorizeRequest {
        app_id: SIM_APP_ID,
        redirect_uri: REDIRECT,
        scopes: &Scopes::parse("").unwrap(),
        state: &RedirectState::generate(),
        pkce: &PkceVerifier::generate(),
    });
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Log in"));
}

#[tokio::test]
async fn v2_refresh_rotates_and_refuses_reuse() {
    let (sim, client) = start();
    let oauth = &sim.state().open_api.oauth;
    let first = redirect_token(&sim, &client, ADA, "").await;
    let r1 = first.refresh_token.unwrap();
    let refresh = |token: String, family| {
        let client = client.clone();
        async move {
            client
                .refresh_user_token(family, SIM_APP_ID, SIM_APP_SECRET, &token)
                .await
        }
    };

    let second = refresh(r1.clone(), TokenFamily::OAuthV2).await.unwrap();
    let r2 = second.refresh_token.unwrap();
    assert_ne!(r1, r2);
    assert_ne!(first.access_token, second.access_token);

    let err = refresh(r1.clone(), TokenFamily::OAuthV2).await.unwrap_err();
    assert_eq!(api_code(&err), codes::REFRESH_TOKEN_USED);
    assert!(err.needs_reauth());
    assert_eq!(oauth.refresh_token_uses(&r1), 2);
    assert_eq!(oauth.refresh_token_uses(&r2), 0);
    assert_eq!(oauth.reused_refresh_tokens(), vec![r1]);
    assert_eq!(oauth.refreshes_granted(), 1);

    // A redirect's refresh token means nothing to the accounts host.
    let err = refresh(r2, TokenFamily::Accounts).await.unwrap_err();
    assert_eq!(api_code(&err), codes::REFRESH_TOKEN_INVALID);
    assert!(err.needs_reauth());
}

#[tokio::test]
async fn device_flow_tokens_refresh_at_the_accounts_host_with_a_json_body() {
    let (sim, client) = start();
    let oauth = &sim.state().open_api.oauth;
    let refresh = |token: String, family| {
        let client = client.clone();
        async move {
            client
                .refresh_user_token(family, SIM_APP_ID, SIM_APP_SECRET, &token)
                .await
        }
    };
    let (_, r1) = oauth.grant_token_pair(ADA, Generation::Accounts);

    let next = refresh(r1.clone(), TokenFamily::Accounts).await.unwrap();
    let r2 = next.refresh_token.clone().unwrap();
    assert_ne!(r1, r2);
    assert_eq!(next.scope.as_deref(), Some(default_scope().as_str()));
    assert_eq!(oauth.refresh_token_uses(&r1), 1);
    let sent = &sim.recorder().requests_to("/oauth/v3/token")[0];
    assert_eq!(
        sent.json(),
        json!({"grant_type": "refresh_token", "refresh_token": r1, "client_id": SIM_APP_ID, "client_secret": SIM_APP_SECRET})
    );
    let err = refresh(r1, TokenFamily::Accounts).await.unwrap_err();
    assert_eq!(api_code(&err), codes::REFRESH_TOKEN_USED);

    // Not at v2: the family that issued it is the only one that takes it.
    let err = refresh(r2.clone(), TokenFamily::OAuthV2).await.unwrap_err();
    assert_eq!(api_code(&err), codes::REFRESH_TOKEN_INVALID);

    oauth.expire_refresh_tokens(ADA);
    let err = refresh(r2, TokenFamily::Accounts).await.unwrap_err();
    assert_eq!(api_code(&err), codes::REFRESH_TOKEN_EXPIRED);
    assert!(err.needs_reauth());

    let (_, fresh) = oauth.grant_token_pair(ADA, Generation::Accounts);
    oauth.revoke_refresh_tokens(ADA);
    let err = refresh(fresh, TokenFamily::Accounts).await.unwrap_err();
    assert_eq!(api_code(&err), codes::REFRESH_TOKEN_REVOKED);
}

#[tokio::test]
async fn tokens_carry_the_scopes_asked_for_and_calls_outside_them_are_refused() {
    let (sim, client) = start();
    let oauth = &sim.state().open_api.oauth;
    let narrow = redirect_token(&sim, &client, ADA, "contact:user.base:readonly").await;
    assert_eq!(
        oauth.access_token_scope(&narrow.access_token).as_deref(),
        Some("contact:user.base:readonly offline_access")
    );
    let info = client.user_info(&narrow.access_token).await.unwrap();
    assert_eq!(
        info.email, None,
        "no email without contact:user.email:readonly"
    );
    let err = client
        .create_aily_session(&narrow.access_token)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LarkError::ScopeNotGranted { scopes, .. } if scopes == &["aily:session:write"]),
        "{err:?}"
    );

    let full = user_token(&sim, &client).await;
    let info = client.user_info(&full.access_token).await.unwrap();
    assert_eq!(info.email.as_deref(), Some("adalovelace@example.com"));
    assert!(client.create_aily_session(&full.access_token).await.is_ok());
}

#[tokio::test]
async fn user_info_follows_profile_changes_and_token_state() {
    let (sim, client) = start();
    let oauth = &sim.state().open_api.oauth;
    let token = user_token(&sim, &client).await.access_token;

    let info = client.user_info(&token).await.unwrap();
    assert_eq!(info.open_id, ADA);
    assert_eq!(info.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(info.email.as_deref(), Some("adalovelace@example.com"));
    assert_eq!(info.union_id.as_deref(), Some("on_ada0001"));
    assert_eq!(info.mobile, None);
    assert!(info.tenant_key.is_some());

    assert!(oauth.update_user(ADA, |u| {
        u.name = "Ada King".into();
        u.email = None;
    }));
    let info = client.user_info(&token).await.unwrap();
    assert_eq!(info.name.as_deref(), Some("Ada King"));
    assert_eq!(info.email, None);

    oauth.expire_access_tokens(ADA);
    let err = client.user_info(&token).await.unwrap_err();
    assert_eq!(api_code(&err), codes::USER_ACCESS_TOKEN_EXPIRED);
    assert!(err.is_token_invalid());

    let other = user_token(&sim, &client).await.access_token;
    oauth.revoke_access_tokens(ADA);
    let err = client.user_info(&other).await.unwrap_err();
    assert_eq!(api_code(&err), codes::USER_ACCESS_TOKEN_INVALID);
    assert!(err.is_token_invalid());
}

#[tokio::test]
async fn short_lived_access_tokens_expire() {
    let (sim, client) = start();
    sim.state()
        .open_api
        .oauth
        .set_access_token_ttl(Duration::ZERO);
    let token = user_token(&sim, &client).await;
    assert_eq!(token.expires_in, Duration::ZERO);
    let err = client.user_info(&token.access_token).await.unwrap_err();
    assert_eq!(api_code(&err), codes::USER_ACCESS_TOKEN_EXPIRED);
}

#[tokio::test]
async fn cards_are_sent_as_strings_and_can_be_updated() {
    let (sim, client) = start();
    let im = &sim.state().open_api.im;
    let tenant = tenant_token(&client).await;
    let session = uuid::Uuid::new_v4();
    let request_card = card::auth_request_card(session, &card::AuthCardOptions::default(), None);

    let sent = client
        .send_card(
            &tenant,
            ReceiveIdType::OpenId,
            ADA,
            &request_card,
            Some("send-1"),
        )
        .await
        .unwrap();
    assert!(sent.message_id.starts_with("om_"));
    assert!(sent
        .chat_id
        .as_deref()
        .is_some_and(|c| c.starts_with("oc_")));
    assert!(sent.create_time.is_some());

    let wire = &sim.recorder().requests_to("/im/v1/messages")[0];
    assert_eq!(wire.query, "receive_id_type=open_id");
    assert_eq!(wire.bearer(), Some(tenant.as_str()));
    assert!(wire.json()["content"].is_string());
    assert_eq!(wire.json()["msg_type"], "interactive");

    let stored = im.message(&sent.message_id).unwrap();
    assert_eq!(stored.receive_id, ADA);
    assert_eq!(stored.content, request_card);
    let button_value = &stored.content["body"]["elements"][1]["behaviors"][0]["value"];
    assert_eq!(card::session_id_from_action(button_value), Some(session));

    // A retry with the same uuid delivers nothing new.
    let again = client
        .send_card(
            &tenant,
            ReceiveIdType::OpenId,
            ADA,
            &request_card,
            Some("send-1"),
        )
        .await
        .unwrap();
    assert_eq!(again.message_id, sent.message_id);
    assert_eq!(im.messages().len(), 1);

    let done = card::authorized_card("Ada Lovelace");
    client
        .update_card(&tenant, &sent.message_id, &done)
        .await
        .unwrap();
    let stored = im.last_message_to(ADA).unwrap();
    assert_eq!(stored.current(), &done);
    let patch = &sim.recorder().requests_to(&sent.message_id)[0];
    assert_eq!(patch.method, "PATCH");
    assert!(patch.json()["content"].is_string());
}

#[tokio::test]
async fn im_refuses_bad_tokens_and_cards_that_cannot_update() {
    let (sim, client) = start();
    let tenant = tenant_token(&client).await;
    let card = json!({"schema": "2.0", "body": {"elements": []}});

    let err = client
        .send_card("t-not-issued", ReceiveIdType::OpenId, ADA, &card, None)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), codes::ACCESS_TOKEN_INVALID);
    assert!(err.is_token_invalid());

    let err = client
        .send_card(&tenant, ReceiveIdType::ChatId, ADA, &card, None)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), codes::FIELD_VALIDATION_FAILED);

    let sent = client
        .send_card(&tenant, ReceiveIdType::OpenId, ADA, &card, None)
        .await
        .unwrap();
    let err = client
        .update_card(&tenant, &sent.message_id, &card)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), codes::IM_CARD_NOT_UPDATABLE);
    let err = client
        .update_card(&tenant, "om_missing", &card::failure_card("x"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), codes::IM_MESSAGE_NOT_FOUND);

    sim.state().open_api.revoke_app_tokens();
    let err = client
        .send_card(&tenant, ReceiveIdType::OpenId, ADA, &card, None)
        .await
        .unwrap_err();
    assert!(err.is_token_invalid());
}

/// Poll a run to its end; each poll is one request, so a bound on polls
/// (not time) keeps a broken run from hanging the test.
async fn poll_run(
    client: &LarkClient,
    token: &str,
    session: &str,
    run: &str,
) -> super::aily_api::AilyRun {
    for _ in 0..10 {
        let run = client.get_aily_run(token, session, run).await.unwrap();
        if run.run_status().is_terminal() {
            return run;
        }
    }
    panic!("run {run} never finished");
}

#[tokio::test]
async fn aily_answers_as_the_user() {
    let (sim, client) = start();
    let aily = &sim.state().open_api.aily;
    let token = user_token(&sim, &client).await.access_token;

    let session = client.create_aily_session(&token).await.unwrap();
    let posted = client
        .post_aily_message(&token, &session.id, "idem-1", "What is 2+2?")
        .await
        .unwrap();
    assert_eq!(posted.text(), Some("What is 2+2?"));
    assert!(!posted.is_from_assistant());
    let run = client
        .start_aily_run(&token, &session.id, "app_sim", Some("skill_1"))
        .await
        .unwrap();
    assert!(!run.run_status().is_terminal());

    let first_poll = client
        .get_aily_run(&token, &session.id, &run.id)
        .await
        .unwrap();
    assert_eq!(first_poll.run_status(), RunStatus::Running);
    let done = poll_run(&client, &token, &session.id, &run.id).await;
    assert_eq!(done.run_status(), RunStatus::Completed);

    let messages = client
        .list_aily_messages(&token, &session.id, Some(&run.id))
        .await
        .unwrap();
    assert_eq!(
        assistant_reply(&messages).as_deref(),
        Some("Echo: What is 2+2?")
    );

    let calls = aily.calls();
    assert_eq!(calls.len(), 6);
    assert!(calls
        .iter()
        .all(|c| c.bearer.as_deref() == Some(token.as_str())));
    let start = &sim.recorder().requests_to("/runs")[0];
    assert_eq!(
        start.json(),
        json!({"app_id": "app_sim", "skill_id": "skill_1"})
    );
    let post = &sim.recorder().requests_to("/messages")[0];
    assert_eq!(post.json()["content_type"], "MDX");
    assert_eq!(post.json()["idempotent_id"], "idem-1");
}

#[tokio::test]
async fn aily_runs_fail_on_demand_and_sessions_are_private() {
    let (sim, client) = start();
    let aily = &sim.state().open_api.aily;
    aily.set_polls_to_complete(1);
    aily.fail_next_run("model_overloaded", "try later");
    let token = user_token(&sim, &client).await.access_token;
    let session = client.create_aily_session(&token).await.unwrap();
    client
        .post_aily_message(&token, &session.id, "i", "hi")
        .await
        .unwrap();
    let run = client
        .start_aily_run(&token, &session.id, "app_sim", None)
        .await
        .unwrap();
    let done = poll_run(&client, &token, &session.id, &run.id).await;
    assert_eq!(done.run_status(), RunStatus::Failed);
    let error = done.error.unwrap();
    assert_eq!(error.code.as_deref(), Some("model_overloaded"));
    assert_eq!(error.message.as_deref(), Some("try later"));

    sim.state()
        .open_api
        .oauth
        .add_user(SimUser::new("ou_bob0002", "Bob"));
    let bob = redirect_token(&sim, &client, "ou_bob0002", &default_scope())
        .await
        .access_token;
    let err = client
        .post_aily_message(&bob, &session.id, "j", "peek")
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), codes::AILY_NOT_FOUND);

    let err = client.create_aily_session("u-unknown").await.unwrap_err();
    assert!(err.is_token_invalid());
}

#[tokio::test]
async fn aily_message_lists_are_read_across_pages() {
    let (sim, client) = start();
    sim.state().open_api.aily.set_polls_to_complete(0);
    let token = user_token(&sim, &client).await.access_token;
    let session = client.create_aily_session(&token).await.unwrap();
    for i in 0..60 {
        client
            .post_aily_message(&token, &session.id, &format!("m{i}"), &format!("q{i}"))
            .await
            .unwrap();
        client
            .start_aily_run(&token, &session.id, "app_sim", None)
            .await
            .unwrap();
    }
    let all = client
        .list_aily_messages(&token, &session.id, None)
        .await
        .unwrap();
    assert_eq!(all.len(), 120);
    assert_eq!(sim.recorder().requests_to("/messages").len(), 60 + 6);
}

#[tokio::test]
async fn unexpected_json_is_a_decode_error() {
    let (sim, client) = start();
    let tenant = tenant_token(&client).await;
    sim.recorder().inject(
        "im_send",
        Fault::Respond {
            status: 200,
            body: json!({"code": 0, "msg": "ok", "data": {"unexpected": true}}),
        },
        1,
    );
    let err = client
        .send_card(&tenant, ReceiveIdType::OpenId, ADA, &json!({}), None)
        .await
        .unwrap_err();
    assert!(matches!(err, LarkError::Decode { .. }), "{err:?}");
    assert!(!err.is_transient());
}

/// A server that answers every connection with `response` verbatim.
async fn raw_server(response: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn html_and_garbage_answers_are_errors_not_panics() {
    let cases: [(&str, u16); 4] = [
        ("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 20\r\nConnection: close\r\n\r\n<html>hello</html>\r\n", 200),
        ("HTTP/1.1 502 Bad Gateway\r\nX-Tt-Logid: gw-1\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad gateway", 502),
        ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"code\":0", 200),
        ("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 401),
    ];
    for (response, status) in cases {
        let client = client_for(&raw_server(response).await);
        let err = client.user_info("u-token").await.unwrap_err();
        assert!(
            matches!(&err, LarkError::Http { status: s, .. } if *s == status),
            "{status}: {err:?}"
        );
        assert_eq!(err.is_transient(), status >= 500);
        assert_eq!(err.is_token_invalid(), status == 401);
    }
    let client = client_for(&raw_server("HTTP/1.1 502 Bad Gateway\r\nX-Tt-Logid: gw-1\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx").await);
    let err = client.user_info("u-token").await.unwrap_err();
    assert_eq!(err.log_id(), Some("gw-1"));

    let client = client_for(&raw_server("not http at all\r\n\r\n").await);
    let err = client.user_info("u-token").await.unwrap_err();
    assert!(matches!(err, LarkError::Transport(_)), "{err:?}");
}

#[tokio::test]
async fn unreachable_platform_is_a_transient_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client_for(&base)
        .tenant_access_token(SIM_APP_ID, SIM_APP_SECRET)
        .await
        .unwrap_err();
    assert!(matches!(err, LarkError::Transport(_)), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn sim_rejects_cards_that_are_not_json_strings() {
    // The wire rule the client's double encoding exists for.
    let (sim, client) = start();
    let tenant = tenant_token(&client).await;
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!(
            "{}/open-apis/im/v1/messages?receive_id_type=open_id",
            sim.base_url()
        ))
        .bearer_auth(&tenant)
        .json(&json!({"receive_id": ADA, "msg_type": "interactive", "content": {"schema": "2.0"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["code"], codes::IM_INVALID_CONTENT);
    assert!(sim.state().open_api.im.messages().is_empty());
}
