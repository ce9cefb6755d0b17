//! `url decode` against the published Meegle CLI (`@lark-project/meegle`
//! 1.0.23): every URL of `tests/fixtures/url_decode.json` must get exactly
//! the reference's answer, recorded there for `json` and `ndjson` (stdout
//! byte for byte, exit code, and for errors the message our envelope
//! carries).
//!
//! With `MEEGLE_BIN` set (CI sets it), the whole corpus is also asked of the
//! live reference, so a drift shows; with `UPDATE_URL_DECODE_FIXTURE=1` as
//! well, the live answers are written back to the fixture first. To add a
//! URL, add `{"url": "…"}` to the fixture and record.

use std::path::{Path, PathBuf};
use std::process::Command;

use lark_service::device::url_decode::{
    rules::RULES, run, DecodeArgs, UrlCommand, URL_KIND_UNKNOWN,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/url_decode.json"
);
const FORMATS: [&str; 2] = ["json", "ndjson"];

/// What one run printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Answer {
    exit: i32,
    stdout: String,
    stderr: String,
}

/// One URL and the reference's answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Case {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    json: Option<Answer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ndjson: Option<Answer>,
}

impl Case {
    fn answer(&self, format: &str) -> Option<&Answer> {
        match format {
            "json" => self.json.as_ref(),
            _ => self.ndjson.as_ref(),
        }
    }
}

fn load() -> Vec<Case> {
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn decode_args(url: Option<&str>, format: Option<&str>) -> UrlCommand {
    UrlCommand::Decode(DecodeArgs {
        url: url.map(str::to_owned),
        format: format.map(str::to_owned),
    })
}

fn ours(url: Option<&str>, format: Option<&str>) -> Answer {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = run(&decode_args(url, format), &mut out, &mut err);
    Answer {
        exit,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    }
}

/// How `ours` differs from the reference's `theirs`, if it does. Output
/// must be identical; an error must be our envelope carrying the
/// reference's message (it prints the bare message).
fn difference(theirs: &Answer, ours: &Answer) -> Option<String> {
    if theirs.exit != ours.exit {
        return Some(format!("exit {} vs ours {}", theirs.exit, ours.exit));
    }
    if theirs.exit == 0 {
        return (theirs.stdout != ours.stdout || theirs.stderr != ours.stderr).then(|| {
            format!(
                "stdout {:?}\n   ours {:?} (stderr {:?})",
                theirs.stdout, ours.stdout, ours.stderr
            )
        });
    }
    if !ours.stdout.is_empty() {
        return Some(format!("an error printed to stdout: {:?}", ours.stdout));
    }
    let Ok(envelope) = serde_json::from_str::<Value>(&ours.stderr) else {
        return Some(format!("stderr is not an envelope: {:?}", ours.stderr));
    };
    let expected = theirs.stderr.trim_end();
    let message = &envelope["error"]["message"];
    let code = envelope["error"]["code"].as_str().unwrap_or_default();
    (message != expected || !matches!(code, "INVALID_OPTION" | "MISSING_OPTION"))
        .then(|| format!("message {expected:?}\n   ours {}", envelope["error"]))
}

fn report(mismatches: &[String]) {
    assert!(
        mismatches.is_empty(),
        "{} answers differ from the reference:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(25)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_recorded_answer_is_ours() {
    let cases = load();
    assert!(cases.len() >= 300, "the corpus has {} URLs", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        for format in FORMATS {
            let Some(theirs) = case.answer(format) else {
                panic!(
                    "{:?} has no recorded {format} answer: record with MEEGLE_BIN set and UPDATE_URL_DECODE_FIXTURE=1",
                    case.url
                );
            };
            let ours = ours(Some(&case.url), Some(format));
            if let Some(d) = difference(theirs, &ours) {
                mismatches.push(format!("{:?} --format {format}: {d}", case.url));
            }
        }
    }
    report(&mismatches);
}

#[test]
fn the_corpus_covers_every_kind() {
    let cases = load();
    let kinds: std::collections::BTreeSet<String> = cases
        .iter()
        .filter_map(|c| c.ndjson.as_ref())
        .filter(|a| a.exit == 0)
        .map(|a| {
            let v: Value = serde_json::from_str(&a.stdout).unwrap();
            v["url_kind"].as_str().unwrap().to_owned()
        })
        .collect();
    let missing: Vec<&str> = RULES
        .iter()
        .map(|r| r.kind)
        .chain([URL_KIND_UNKNOWN])
        .filter(|k| !kinds.contains(*k))
        .collect();
    assert!(missing.is_empty(), "no URL of kind {missing:?}");
    let errors = cases
        .iter()
        .filter(|c| c.ndjson.as_ref().is_some_and(|a| a.exit != 0))
        .count();
    assert!(errors >= 50, "only {errors} URLs the reference refuses");
}

#[test]
fn garbage_gets_the_envelope() {
    let envelope = |code: &str, message: &str| json!({"data": null, "error": {"code": code, "message": message, "retryable": false}, "meta": {}});
    let o = ours(Some("not a url"), None);
    assert_eq!((o.exit, o.stdout.as_str()), (1, ""));
    let message = "invalid url: parse \"https://not a url\": invalid character \" \" in host name";
    assert_eq!(
        o.stderr,
        format!(
            "{}\n",
            serde_json::to_string_pretty(&envelope("INVALID_OPTION", message)).unwrap()
        )
    );
    let o = ours(Some("https://h/%zz"), Some("ndjson"));
    assert_eq!(o.exit, 1);
    assert_eq!(
        o.stderr,
        format!(
            "{}\n",
            serde_json::to_string(&envelope(
                "INVALID_OPTION",
                "invalid url: parse \"https://h/%zz\": invalid URL escape \"%zz\""
            ))
            .unwrap()
        )
    );
    for url in [None, Some("")] {
        let o = ours(url, Some("ndjson"));
        assert_eq!(o.exit, 1);
        let v: Value = serde_json::from_str(&o.stderr).unwrap();
        assert_eq!(v, envelope("MISSING_OPTION", "--url is required"));
    }
    let o = ours(Some("/a"), Some("yaml"));
    assert_eq!((o.exit, o.stdout.as_str()), (1, ""));
    let v: Value = serde_json::from_str(&o.stderr).unwrap();
    assert_eq!(
        v,
        envelope(
            "INVALID_OPTION",
            "unsupported --format \"yaml\"; expected one of: json, ndjson, table"
        )
    );
    let o = ours(Some("/xopenapp/storyView/9988"), Some("table"));
    assert_eq!(o.exit, 0);
    assert!(
        o.stdout.contains("\nurl_kind        view_story\n"),
        "{}",
        o.stdout
    );
}

#[test]
fn the_binary_is_wired() {
    let out = Command::new(env!("CARGO_BIN_EXE_lark-service"))
        .args([
            "url",
            "decode",
            "--url",
            "/xopenapp/storyView/9988",
            "--format",
            "ndjson",
        ])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"url_kind\":\"view_story\",\"pathname\":\"/xopenapp/storyView/9988\",\"simple_name\":\"xopenapp\",\"work_item_type\":\"story\",\"view_id\":\"9988\",\"raw\":\"/xopenapp/storyView/9988\"}\n"
    );
    // Given twice, the last one counts, as in the reference.
    let out = Command::new(env!("CARGO_BIN_EXE_lark-service"))
        .args(["url", "decode", "--url", "/a", "--url", "-x y"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["error"]["code"], "INVALID_OPTION");
}

/// The program to ask. The npm package's `bin/meegle.js` only spawns
/// `bin/meegle-<os>-<arch>` with the same arguments (and, on a terminal,
/// checks for updates), so the binary next to it answers the same without
/// a Node start per URL; `MEEGLE_BIN` itself is used when it is not there.
fn reference_program(meegle: &Path) -> PathBuf {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    let suffix = if os == "win32" { ".exe" } else { "" };
    std::fs::canonicalize(meegle)
        .ok()
        .and_then(|script| Some(script.parent()?.join(format!("meegle-{os}-{arch}{suffix}"))))
        .filter(|binary| binary.is_file())
        .unwrap_or_else(|| meegle.to_owned())
}

/// The reference's answer, in a clean environment: a home of its own, no
/// GODEBUG (it changes how Go parses URLs), no update check.
fn ask(program: &Path, home: &Path, url: &str, format: &str) -> Answer {
    let mut command = Command::new(program);
    command
        .args(["url", "decode", "--url", url, "--format", format])
        .env_clear()
        .env("HOME", home)
        .env("CI", "1")
        .env("MEEGLE_NO_UPDATE_CHECK", "1");
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let out = command.output().unwrap();
    Answer {
        exit: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[test]
fn the_live_reference_agrees() {
    let Some(meegle) = std::env::var_os("MEEGLE_BIN") else {
        eprintln!("MEEGLE_BIN not set: live reference comparison skipped");
        return;
    };
    let meegle = PathBuf::from(meegle);
    let program = reference_program(&meegle);
    let home = tempfile::tempdir().unwrap();
    // The wrapper and the binary it runs agree.
    let probe = "https://project.feishu.cn/myspace/story/detail/123456?tab=x";
    assert_eq!(
        ask(&meegle, home.path(), probe, "json"),
        ask(&program, home.path(), probe, "json")
    );

    let mut cases = load();
    let (mut drift, mut ours_differ) = (Vec::new(), Vec::new());
    for case in &mut cases {
        for format in FORMATS {
            let theirs = ask(&program, home.path(), &case.url, format);
            if case.answer(format) != Some(&theirs) {
                drift.push(format!(
                    "{:?} --format {format}: the reference now answers {theirs:?}",
                    case.url
                ));
            }
            if let Some(d) = difference(&theirs, &ours(Some(&case.url), Some(format))) {
                ours_differ.push(format!("{:?} --format {format}: {d}", case.url));
            }
            match format {
                "json" => case.json = Some(theirs),
                _ => case.ndjson = Some(theirs),
            }
        }
    }
    if std::env::var_os("UPDATE_URL_DECODE_FIXTURE").is_some() {
        let mut text = serde_json::to_string_pretty(&cases).unwrap();
        text.push('\n');
        std::fs::write(FIXTURE, text).unwrap();
        eprintln!("recorded {} URLs in {FIXTURE}", cases.len());
    } else {
        ours_differ.extend(drift);
    }
    report(&ours_differ);
}
