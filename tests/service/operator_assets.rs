//! The operator assets in `deploy/` name only metrics that exist, parse,
//! and (where promtool is installed) pass its checks.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn asset(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(name),
    )
    .unwrap_or_else(|e| panic!("deploy/{name}: {e}"))
}

/// Every `lark_…` identifier in `text`, with histogram suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("lark_") {
        let start = i + pos;
        let boundary = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b'-');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| start + e);
        if boundary {
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            names.insert(base.to_owned());
        }
        i = end;
    }
    names
}

fn assert_known(file: &str, names: &BTreeSet<String>) {
    assert!(!names.is_empty(), "{file} names no metrics");
    for name in names {
        assert!(
            lark_service::metrics::ALL.contains(&name.as_str()),
            "{file} uses unknown metric {name}"
        );
    }
}

#[test]
fn the_grafana_dashboard_parses_and_uses_real_metrics() {
    let text = asset("grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(dashboard["panels"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
    let exprs: String = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("\n");
    assert_known("grafana-dashboard.json", &metric_names(&exprs));
}

#[test]
fn the_alert_rules_cover_the_promised_cases_and_use_real_metrics() {
    let text = asset("prometheus-alerts.yml");
    for alert in [
        "LarkWebSocketDown",
        "LarkWebSocketRefused",
        "LarkAuthFailureRateHigh",
        "LarkTokenRefreshFailures",
        "LarkUserSyncFailed",
    ] {
        assert!(text.contains(&format!("alert: {alert}")), "missing {alert}");
    }
    assert!(
        text.contains("for: 2m"),
        "WS down must fire after 2 minutes"
    );
    let exprs: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| !l.contains("description:") && !l.contains("summary:"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_known("prometheus-alerts.yml", &metric_names(&exprs));
    match Command::new("promtool")
        .args(["check", "rules"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus-alerts.yml"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(_) => eprintln!("promtool not installed; structural checks only"),
    }
}

#[test]
fn the_systemd_unit_runs_serve_and_does_not_restart_on_config_errors() {
    let unit = asset("lark-service.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/lark-service serve"));
    assert!(unit.contains("RestartPreventExitStatus=2"));
    // The database and its -wal/-shm files are the service user's alone.
    assert!(unit.contains("\nUMask=0077\n"), "{unit}");
    assert!(unit.contains("\nStateDirectoryMode=0700\n"), "{unit}");
    match Command::new("systemd-analyze")
        .args(["verify"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/lark-service.service"))
        .output()
    {
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("Unknown") => {
            panic!("systemd-analyze: {}", String::from_utf8_lossy(&out.stderr))
        }
        _ => {}
    }
}
