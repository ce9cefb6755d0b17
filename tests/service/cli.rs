//! The binary's exit codes and messages for bad configuration.

use std::process::Command;

use crate::support::binary::{lark_service, Served};

#[test]
fn a_bad_encryption_key_exits_2_naming_it() {
    let out = lark_service()
        .args(["serve"])
        .env("APP_ID", "cli_a1b2c3d4e5f60718")
        .env("APP_SECRET", "x")
        .env("ENCRYPTION_KEY", "too-short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ENCRYPTION_KEY"), "{stderr}");
    assert!(stderr.contains("64 hex"), "{stderr}");
}

#[test]
fn serve_without_credentials_names_them_all() {
    let out = lark_service().args(["serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("APP_ID, APP_SECRET, ENCRYPTION_KEY"),
        "{stderr}"
    );
}

#[test]
fn a_bad_cron_and_a_bad_database_url_exit_2() {
    for (var, value) in [
        ("USER_INFO_SYNC_SCHEDULE", "bad"),
        ("DATABASE_URL", "mysql://x/y"),
    ] {
        let out = lark_service()
            .args(["migrate"])
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{stderr}");
    }
}

#[test]
fn migrate_applies_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let first = lark_service()
        .args(["migrate"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let folders = std::fs::read_dir("migrations/sqlite").unwrap().count();
    assert!(
        String::from_utf8_lossy(&first.stdout).contains(&format!("applied {folders} migration"))
    );
    let second = lark_service()
        .args(["migrate"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&second.stdout).contains("applied 0 migration"));
}

#[test]
fn serve_stops_cleanly_on_sigterm_within_5_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let sim = lark_service::sim::Simulator::start().unwrap();
    let mut serve = lark_service();
    serve
        .args(["serve"])
        .env("APP_ID", lark_service::sim::SIM_APP_ID)
        .env("APP_SECRET", lark_service::sim::SIM_APP_SECRET)
        .env("ENCRYPTION_KEY", "22".repeat(32))
        .env("LARK_DOMAIN", sim.base_url())
        .env("LARK_ACCOUNTS_DOMAIN", sim.base_url())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("s.db").display()),
        )
        .env("HTTP_BIND", "127.0.0.1:0");
    let mut served = Served::start(serve);
    served.sigterm();
    let exit = served.wait_exit(std::time::Duration::from_secs(5));
    assert!(exit.success(), "serve exited with {exit}");
}

#[test]
fn send_auth_card_and_sessions_print_what_the_quickstart_shows() {
    let dir = tempfile::tempdir().unwrap();
    let sim = lark_service::sim::Simulator::start().unwrap();
    let db = format!("sqlite://{}", dir.path().join("c.db").display());
    let with_env = |cmd: &mut Command| {
        cmd.env("APP_ID", lark_service::sim::SIM_APP_ID)
            .env("APP_SECRET", lark_service::sim::SIM_APP_SECRET)
            .env("ENCRYPTION_KEY", "33".repeat(32))
            .env("LARK_DOMAIN", sim.base_url())
            .env("LARK_ACCOUNTS_DOMAIN", sim.base_url())
            .env("DATABASE_URL", &db);
    };

    let mut send = lark_service();
    send.args(["send-auth-card", "ou_7dab8a3d3cdcc08c560abcd", "--detailed"]);
    with_env(&mut send);
    let out = send.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("✅ Authorization card sent!"), "{stdout}");
    assert!(stdout.contains("Message ID: om_"), "{stdout}");
    assert!(stdout.contains("Expires in: 10 minutes"), "{stdout}");
    let session_id = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Session ID: "))
        .unwrap()
        .to_owned();
    assert_eq!(sim.state().open_api.im.messages().len(), 1);

    let mut list = lark_service();
    list.args(["sessions", "--state", "pending", "--format", "json"]);
    with_env(&mut list);
    let out = list.output().unwrap();
    assert!(out.status.success());
    let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sessions[0]["session_id"], session_id.as_str());
    assert_eq!(sessions[0]["open_id"], "ou_7dab8a3d3cdcc08c560abcd");

    let mut table = lark_service();
    table.args(["sessions"]);
    with_env(&mut table);
    let out = table.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("session_id"), "{stdout}");
    assert!(
        stdout.contains(&session_id) && stdout.contains("(1 session)"),
        "{stdout}"
    );

    let mut bad = lark_service();
    bad.args(["sessions", "--state", "done"]);
    with_env(&mut bad);
    let out = bad.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--state"));
}

#[test]
fn ai_prints_the_answer_as_the_user_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = lark_service::sim::Simulator::start().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ai.db").display());
    let key = "33".repeat(32);
    let with_env = |cmd: &mut Command| {
        cmd.env("APP_ID", lark_service::sim::SIM_APP_ID)
            .env("APP_SECRET", lark_service::sim::SIM_APP_SECRET)
            .env("ENCRYPTION_KEY", &key)
            .env("LARK_DOMAIN", sim.base_url())
            .env("LARK_ACCOUNTS_DOMAIN", sim.base_url())
            .env("AILY_POLL_INTERVAL_MS", "20")
            .env("DATABASE_URL", &db);
    };
    let mut migrate = lark_service();
    migrate.arg("migrate");
    with_env(&mut migrate);
    assert!(migrate.output().unwrap().status.success());
    let url = lark_service::db::DatabaseUrl::parse(&db).unwrap();
    let mut conn = lark_service::db::connection::ConnectionManager::new(url)
        .establish()
        .unwrap();
    let vault = lark_service::auth::vault::Vault::new(
        &lark_service::auth::vault::EncryptionKey::from_hex(&key).unwrap(),
    );
    let ada = lark_service::sim::oauth::SimUser::new("ou_cli00000000000000000000001", "Ada");
    lark_service::sim::seed::refreshable_sessions(
        &mut conn,
        &sim.state().open_api.oauth,
        &vault,
        lark_service::sim::SIM_APP_ID,
        [ada.clone()],
        lark_service::db::now(),
        lark_service::db::now() + chrono::Duration::hours(2),
    )
    .unwrap();

    let mut unconfigured = lark_service();
    unconfigured.args(["ai", &ada.open_id, "hi"]);
    with_env(&mut unconfigured);
    let out = unconfigured.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AILY_APP_ID"));

    let mut ask = lark_service();
    ask.args(["ai", &ada.open_id, "What is 2+2?"])
        .env("AILY_APP_ID", "spring_cli__c");
    with_env(&mut ask);
    let out = ask.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "✅ AI API call successful!",
        "Response: Echo: What is 2+2?",
        "Run ID: run_",
        "Session ID: session_",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in {stdout}"
        );
    }

    let mut stranger = lark_service();
    stranger
        .args(["ai", "ou_cli00000000000000000000002", "hi"])
        .env("AILY_APP_ID", "spring_cli__c");
    with_env(&mut stranger);
    let out = stranger.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ou_cli00000000000000000000002") && stderr.contains("send-auth-card"),
        "{stderr}"
    );
}
