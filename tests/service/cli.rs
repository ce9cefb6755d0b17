//! The binary's exit codes and messages for bad configuration.

use crate::support::binary::{lark_service, lark_service_against, Served};
use crate::support::{in_seconds, migration_count, seed_refreshable_at};

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
fn a_short_admin_token_stops_start_up_with_exit_2_naming_it() {
    let out = lark_service()
        .args(["serve"])
        .env("APP_ID", "cli_a1b2c3d4e5f60718")
        .env("APP_SECRET", "x")
        .env("ENCRYPTION_KEY", "11".repeat(32))
        .env("ADMIN_TOKEN", "short-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ADMIN_TOKEN") && stderr.contains("at least 16"),
        "{stderr}"
    );
    assert!(!stderr.contains("short-token"), "the token is not echoed");
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
    let folders = migration_count("sqlite");
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
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let mut serve = lark_service_against(&sim, &db);
    serve.args(["serve"]).env("HTTP_BIND", "127.0.0.1:0");
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
    let mut send = lark_service_against(&sim, &db);
    send.args(["send-auth-card", "ou_7dab8a3d3cdcc08c560abcd", "--detailed"]);
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

    let mut list = lark_service_against(&sim, &db);
    list.args(["sessions", "--state", "pending", "--format", "json"]);
    let out = list.output().unwrap();
    assert!(out.status.success());
    let sessions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sessions[0]["session_id"], session_id.as_str());
    assert_eq!(sessions[0]["open_id"], "ou_7dab8a3d3cdcc08c560abcd");

    let mut table = lark_service_against(&sim, &db);
    table.args(["sessions"]);
    let out = table.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("session_id"), "{stdout}");
    assert!(
        stdout.contains(&session_id) && stdout.contains("(1 session)"),
        "{stdout}"
    );

    let mut bad = lark_service_against(&sim, &db);
    bad.args(["sessions", "--state", "done"]);
    let out = bad.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--state"));
}

#[test]
fn ai_prints_the_answer_as_the_user_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = lark_service::sim::Simulator::start().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ai.db").display());
    let ai = || {
        let mut cmd = lark_service_against(&sim, &db);
        cmd.env("AILY_POLL_INTERVAL_MS", "20");
        cmd
    };
    let mut migrate = lark_service_against(&sim, &db);
    migrate.arg("migrate");
    assert!(migrate.output().unwrap().status.success());
    let ada = lark_service::sim::oauth::SimUser::new("ou_cli00000000000000000000001", "Ada");
    seed_refreshable_at(&db, &sim, vec![ada.clone()], in_seconds(2 * 3600));

    let mut unconfigured = ai();
    unconfigured.args(["ai", &ada.open_id, "hi"]);
    let out = unconfigured.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AILY_APP_ID"));

    let mut ask = ai();
    ask.args(["ai", &ada.open_id, "What is 2+2?"])
        .env("AILY_APP_ID", "spring_cli__c");
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

    let mut stranger = ai();
    stranger
        .args(["ai", "ou_cli00000000000000000000002", "hi"])
        .env("AILY_APP_ID", "spring_cli__c");
    let out = stranger.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ou_cli00000000000000000000002") && stderr.contains("send-auth-card"),
        "{stderr}"
    );
}
