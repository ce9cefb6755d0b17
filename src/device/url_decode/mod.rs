//! `lark-service url decode`: a Feishu Project / Meegle URL turned into the
//! fields the Auth Guard branches on (`url_kind`, `host`, `simple_name`,
//! `work_item_id`, …), locally and without the network.
//!
//! The answer is the published `meegle url decode`'s (`@lark-project/meegle`
//! 1.0.23), byte for byte in `json` and `ndjson`: its fields in its order
//! (`url_kind` first, not sorted), empty ones left out, strings escaped as
//! Go escapes them. That decoder is Go, so what it accepts and how it reads
//! hosts, paths and queries is Go's `net/url`, reproduced in [`go_url`].
//! `table` is ours (the reference prints a Go struct dump there). Errors
//! are the Auth Guard's stderr envelope with the reference's message.
//!
//! # Layout
//! - [`go_text`]: Go's JSON string escaping and `strconv.Quote`.
//! - [`go_url`]: Go's `url.Parse` and `URL.Query()`.
//! - [`rules`]: the route table and the legacy aliases.
//! - here: the decoder, its rendering and the command.

pub mod go_text;
pub mod go_url;
pub mod rules;

use std::collections::BTreeMap;
use std::io::Write;
use std::str::FromStr;

use clap::{Args, Subcommand};
use tracing::warn;

use super::error::DeviceError;
use super::output::{self, Format};
use go_text::{json_string, quote};
use rules::{ALIASES, RULES};

/// The `url_kind` of a URL no rule knows; callers should refuse it rather
/// than guess.
pub const URL_KIND_UNKNOWN: &str = "unknown";

/// The legacy sub-path the web app still redirects from.
const LEGACY_PREFIX: &[u8] = b"/meego";

/// Why a URL could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlDecodeError {
    #[error("--url is required")]
    Missing,
    #[error("url is empty")]
    Empty,
    /// Go's `url.Parse` refused it; the text is Go's.
    #[error("invalid url: {0}")]
    Invalid(String),
    #[error("unsupported --format {}; expected one of: json, ndjson, table", quote(.0.as_bytes()))]
    Format(String),
}

impl From<UrlDecodeError> for DeviceError {
    fn from(e: UrlDecodeError) -> Self {
        match e {
            UrlDecodeError::Missing => DeviceError::MissingOption(e.to_string()),
            other => DeviceError::InvalidOption(other.to_string()),
        }
    }
}

/// A decoded URL. Text fields are bytes because a decoded path may hold any
/// byte (`%FF`); they are written as Go writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedUrl {
    pub url_kind: &'static str,
    pub host: Vec<u8>,
    pub pathname: Vec<u8>,
    pub simple_name: Vec<u8>,
    pub work_item_type: Vec<u8>,
    pub work_item_id: Vec<u8>,
    pub view_id: Vec<u8>,
    pub chart_id: Vec<u8>,
    pub plugin_key: Vec<u8>,
    pub team_id: Vec<u8>,
    pub template_id: Vec<u8>,
    pub user: Vec<u8>,
    pub business_name: Vec<u8>,
    pub setting_type: Vec<u8>,
    pub edit_str: Vec<u8>,
    /// The work item type was written `_<type>_resource`.
    pub is_resource: bool,
    /// The first value of each well-formed query key.
    pub query: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The path before the `/meego` prefix or a legacy alias was resolved.
    pub redirected_from: Vec<u8>,
    /// The input as given, surrounding whitespace included.
    pub raw: String,
}

/// One output field's value.
enum Value<'a> {
    Text(&'a [u8]),
    Flag,
    Query(&'a BTreeMap<Vec<u8>, Vec<u8>>),
}

impl DecodedUrl {
    /// The fields that are printed, in the reference's order: `url_kind`,
    /// `pathname` and `raw` always, the others only when set.
    fn fields(&self) -> Vec<(&'static str, Value<'_>)> {
        let text = [
            ("host", &self.host),
            ("pathname", &self.pathname),
            ("simple_name", &self.simple_name),
            ("work_item_type", &self.work_item_type),
            ("work_item_id", &self.work_item_id),
            ("view_id", &self.view_id),
            ("chart_id", &self.chart_id),
            ("plugin_key", &self.plugin_key),
            ("team_id", &self.team_id),
            ("template_id", &self.template_id),
            ("user", &self.user),
            ("business_name", &self.business_name),
            ("setting_type", &self.setting_type),
            ("edit_str", &self.edit_str),
        ];
        let mut fields = vec![("url_kind", Value::Text(self.url_kind.as_bytes()))];
        fields.extend(
            text.into_iter()
                .filter(|(name, v)| *name == "pathname" || !v.is_empty())
                .map(|(name, v)| (name, Value::Text(v))),
        );
        if self.is_resource {
            fields.push(("is_resource", Value::Flag));
        }
        if !self.query.is_empty() {
            fields.push(("query", Value::Query(&self.query)));
        }
        if !self.redirected_from.is_empty() {
            fields.push(("redirected_from", Value::Text(&self.redirected_from)));
        }
        // Never empty: decode refuses an empty URL.
        fields.push(("raw", Value::Text(self.raw.as_bytes())));
        fields
    }

    fn set(&mut self, name: &str, value: &[u8]) {
        let field = match name {
            "simple_name" => &mut self.simple_name,
            "work_item_type" => &mut self.work_item_type,
            "work_item_id" => &mut self.work_item_id,
            "view_id" => &mut self.view_id,
            "chart_id" => &mut self.chart_id,
            "plugin_key" => &mut self.plugin_key,
            "team_id" => &mut self.team_id,
            "template_id" => &mut self.template_id,
            "user" => &mut self.user,
            "business_name" => &mut self.business_name,
            "setting_type" => &mut self.setting_type,
            "edit_str" => &mut self.edit_str,
            _ => return,
        };
        *field = value.to_vec();
    }
}

/// Decode `raw`. A URL no rule knows is not an error: its kind is
/// [`URL_KIND_UNKNOWN`].
pub fn decode(raw: &str) -> Result<DecodedUrl, UrlDecodeError> {
    // Go's strings.TrimSpace and Rust's trim agree: Unicode White_Space.
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(UrlDecodeError::Empty);
    }
    // Bare paths and full URLs are parsed as given; anything else is taken
    // as a host without a scheme.
    let input = if trimmed.starts_with('/') || trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("https://{trimmed}")
    };
    let url = go_url::parse(input.as_bytes()).map_err(UrlDecodeError::Invalid)?;
    let pathname = if url.path.is_empty() {
        b"/".to_vec()
    } else {
        url.path
    };
    let mut decoded = DecodedUrl {
        host: url.host,
        query: go_url::query_first_values(&url.raw_query),
        raw: raw.to_owned(),
        ..DecodedUrl::default()
    };
    let mut path = pathname.clone();
    if let Some(rest) = path.strip_prefix(LEGACY_PREFIX) {
        if rest.is_empty() || rest.starts_with(b"/") {
            decoded.redirected_from = pathname.clone();
            path = if rest.is_empty() {
                b"/".to_vec()
            } else {
                rest.to_vec()
            };
        }
    }
    if let Some(canonical) = resolve_alias(&path) {
        if decoded.redirected_from.is_empty() {
            decoded.redirected_from = path;
        }
        path = canonical;
    }
    decoded.pathname = pathname;
    decoded.url_kind = apply_rules(&path, &mut decoded).unwrap_or(URL_KIND_UNKNOWN);
    Ok(decoded)
}

/// The segments of a path, without leading and trailing slashes; empty
/// segments in between are kept (`/a//b` is three segments).
fn segments(path: &[u8]) -> Vec<&[u8]> {
    let start = path.iter().position(|&b| b != b'/');
    let end = path.iter().rposition(|&b| b != b'/');
    match (start, end) {
        (Some(start), Some(end)) => path[start..=end].split(|&b| b == b'/').collect(),
        _ => Vec::new(),
    }
}

/// Whether `path` fits `pattern` (the first `fixed` segments of it), with
/// the `:name` segments it captured.
fn capture<'a>(
    pattern: &[&'static str],
    path: &[&'a [u8]],
) -> Option<Vec<(&'static str, &'a [u8])>> {
    let mut params = Vec::new();
    for (p, s) in pattern.iter().zip(path) {
        match p.strip_prefix(':') {
            Some(name) => params.push((name, *s)),
            None if p.as_bytes() == *s => {}
            None => return None,
        }
    }
    Some(params)
}

fn pattern_segments(pattern: &'static str) -> Vec<&'static str> {
    pattern.split('/').filter(|s| !s.is_empty()).collect()
}

/// The canonical path of a legacy one.
fn resolve_alias(path: &[u8]) -> Option<Vec<u8>> {
    let segs = segments(path);
    ALIASES.iter().find_map(|(pattern, target)| {
        let pattern = pattern_segments(pattern);
        if pattern.len() != segs.len() {
            return None;
        }
        let params = capture(&pattern, &segs)?;
        let mut out = Vec::new();
        for seg in pattern_segments(target) {
            out.push(b'/');
            let param = seg
                .strip_prefix(':')
                .and_then(|name| params.iter().find(|(n, _)| *n == name));
            match param {
                Some((_, value)) => out.extend_from_slice(value),
                None => out.extend_from_slice(seg.as_bytes()),
            }
        }
        Some(out)
    })
}

/// Fill `decoded` from the first rule `path` matches; its kind.
fn apply_rules(path: &[u8], decoded: &mut DecodedUrl) -> Option<&'static str> {
    let segs = segments(path);
    let (rule, params) = RULES.iter().find_map(|rule| {
        let mut pattern = pattern_segments(rule.pattern);
        let fits = if pattern.last() == Some(&"*") {
            pattern.pop();
            segs.len() > pattern.len()
        } else {
            segs.len() == pattern.len()
        };
        if !fits {
            return None;
        }
        capture(&pattern, &segs).map(|params| (rule, params))
    })?;
    if let Some((name, value)) = rule.fixed {
        decoded.set(name, value.as_bytes());
    }
    for (name, value) in params {
        decoded.set(name, value);
    }
    if let Some(inner) = strip_resource_wrap(&decoded.work_item_type) {
        decoded.work_item_type = inner;
        decoded.is_resource = true;
    }
    Some(rule.kind)
}

/// `_story_resource` → `story`, as the web app's router reads resource
/// types. The prefix and the suffix are cut one after the other, so
/// `_resource` is the type `resource`, and `__resource` is no wrap at all.
fn strip_resource_wrap(name: &[u8]) -> Option<Vec<u8>> {
    if name.len() < 3 || !name.starts_with(b"_") || !name.ends_with(b"_resource") {
        return None;
    }
    let inner = &name[1..];
    let inner = inner.strip_suffix(b"_resource").unwrap_or(inner);
    (!inner.is_empty()).then(|| inner.to_vec())
}

/// `url decode --format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UrlFormat {
    #[default]
    Json,
    Ndjson,
    Table,
}

impl FromStr for UrlFormat {
    type Err = UrlDecodeError;

    /// The reference's names; an empty value means the default.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "json" => Ok(UrlFormat::Json),
            "ndjson" => Ok(UrlFormat::Ndjson),
            "table" => Ok(UrlFormat::Table),
            other => Err(UrlDecodeError::Format(other.into())),
        }
    }
}

/// `decoded` as the reference prints it in `format`, newline included.
pub fn render(decoded: &DecodedUrl, format: UrlFormat) -> String {
    match format {
        UrlFormat::Json => render_json(decoded, Some("  ")),
        UrlFormat::Ndjson => render_json(decoded, None),
        UrlFormat::Table => render_table(decoded),
    }
}

/// Go's `json.Marshal` (`indent: None`) or `json.MarshalIndent` with two
/// spaces, followed by a newline.
fn render_json(decoded: &DecodedUrl, indent: Option<&str>) -> String {
    let (open, sep, colon) = match indent {
        Some(_) => ("\n", ",\n", ": "),
        None => ("", ",", ":"),
    };
    let pad = |out: &mut String, depth: usize| {
        if let Some(unit) = indent {
            out.push_str(&unit.repeat(depth));
        }
    };
    let mut out = String::from("{");
    out.push_str(open);
    for (i, (name, value)) in decoded.fields().into_iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        pad(&mut out, 1);
        json_string(name.as_bytes(), &mut out);
        out.push_str(colon);
        match value {
            Value::Text(text) => json_string(text, &mut out),
            Value::Flag => out.push_str("true"),
            Value::Query(query) => {
                out.push('{');
                out.push_str(open);
                for (j, (key, v)) in query.iter().enumerate() {
                    if j > 0 {
                        out.push_str(sep);
                    }
                    pad(&mut out, 2);
                    json_string(key, &mut out);
                    out.push_str(colon);
                    json_string(v, &mut out);
                }
                out.push_str(open);
                pad(&mut out, 1);
                out.push('}');
            }
        }
    }
    out.push_str(open);
    out.push_str("}\n");
    out
}

/// Two aligned columns, field and value, in the JSON's order; a query key
/// is a row `query.KEY`. A value that is empty, has surrounding spaces or
/// holds control characters is shown as a JSON string, so each row stays
/// one unambiguous line.
fn render_table(decoded: &DecodedUrl) -> String {
    let plain = |text: &[u8]| -> String {
        let shown = String::from_utf8_lossy(text);
        let needs_quotes = shown.is_empty()
            || shown.trim() != shown
            || shown.chars().any(|c| c.is_control() || c == '"');
        if needs_quotes {
            let mut quoted = String::new();
            json_string(text, &mut quoted);
            quoted
        } else {
            shown.into_owned()
        }
    };
    let mut rows: Vec<(String, String)> = Vec::new();
    for (name, value) in decoded.fields() {
        match value {
            Value::Text(text) => rows.push((name.into(), plain(text))),
            Value::Flag => rows.push((name.into(), "true".into())),
            Value::Query(query) => rows.extend(
                query
                    .iter()
                    .map(|(k, v)| (format!("query.{}", String::from_utf8_lossy(k)), plain(v))),
            ),
        }
    }
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!("{:width$}  VALUE\n", "FIELD");
    for (key, value) in rows {
        out.push_str(&format!("{key:width$}  {value}\n"));
    }
    out
}

/// `lark-service url …`.
#[derive(Debug, Clone, Subcommand)]
pub enum UrlCommand {
    /// Decode a Feishu Project / Meegle URL into structured fields
    /// (`url_kind` says what the link points to; `unknown` means refuse,
    /// don't guess). Local only, no network.
    Decode(DecodeArgs),
}

/// `url decode` flags. Both are plain strings so that misuse gets the
/// JSON envelope rather than clap's text; given twice, the last one counts,
/// as in the reference.
#[derive(Debug, Clone, Default, Args)]
pub struct DecodeArgs {
    /// The URL, a bare path (/space/story/detail/1) or a host without a
    /// scheme.
    #[arg(
        long,
        value_name = "URL",
        allow_hyphen_values = true,
        overrides_with = "url"
    )]
    pub url: Option<String>,
    /// json (default), ndjson or table.
    #[arg(long, value_name = "json|ndjson|table", overrides_with = "format")]
    pub format: Option<String>,
}

/// Run `command`: the result to `out`, an error envelope to `err`; the exit
/// code (0, or 1 for any error, as the reference exits).
pub fn run(command: &UrlCommand, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let UrlCommand::Decode(args) = command;
    let result = args
        .format
        .as_deref()
        .map_or(Ok(UrlFormat::default()), str::parse)
        .and_then(|format| {
            let url = args
                .url
                .as_deref()
                .filter(|u| !u.is_empty())
                .ok_or(UrlDecodeError::Missing)?;
            decode(url).map(|decoded| (decoded, format))
        });
    match result {
        Ok((decoded, format)) => {
            let _ = out.write_all(render(&decoded, format).as_bytes());
            let _ = out.flush();
            0
        }
        Err(e) => {
            warn!("url decode: {e}");
            let envelope_format = match args.format.as_deref() {
                Some("ndjson") => Format::Ndjson,
                _ => Format::Json,
            };
            output::emit(err, output::error_envelope(&e.into()), envelope_format);
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ndjson(raw: &str) -> String {
        render(&decode(raw).unwrap(), UrlFormat::Ndjson)
    }

    #[test]
    fn the_examples_of_the_reference_help() {
        assert_eq!(
            render(
                &decode("https://project.feishu.cn/xopenapp/story/detail/7092625364").unwrap(),
                UrlFormat::Json
            ),
            "{\n  \"url_kind\": \"workitem_detail\",\n  \"host\": \"project.feishu.cn\",\n  \"pathname\": \"/xopenapp/story/detail/7092625364\",\n  \"simple_name\": \"xopenapp\",\n  \"work_item_type\": \"story\",\n  \"work_item_id\": \"7092625364\",\n  \"raw\": \"https://project.feishu.cn/xopenapp/story/detail/7092625364\"\n}\n"
        );
        assert_eq!(
            ndjson("/xopenapp/storyView/9988"),
            "{\"url_kind\":\"view_story\",\"pathname\":\"/xopenapp/storyView/9988\",\"simple_name\":\"xopenapp\",\"work_item_type\":\"story\",\"view_id\":\"9988\",\"raw\":\"/xopenapp/storyView/9988\"}\n"
        );
    }

    #[test]
    fn queries_are_nested_and_indented() {
        assert_eq!(
            render(&decode("https://h/s/story/homepage?b=2&a=1&a=3").unwrap(), UrlFormat::Json),
            "{\n  \"url_kind\": \"workitem_homepage\",\n  \"host\": \"h\",\n  \"pathname\": \"/s/story/homepage\",\n  \"simple_name\": \"s\",\n  \"work_item_type\": \"story\",\n  \"query\": {\n    \"a\": \"1\",\n    \"b\": \"2\"\n  },\n  \"raw\": \"https://h/s/story/homepage?b=2&a=1&a=3\"\n}\n"
        );
    }

    #[test]
    fn legacy_prefix_aliases_and_resource_types() {
        assert_eq!(
            ndjson("/meego/a/jiraImport"),
            "{\"url_kind\":\"import_jira\",\"pathname\":\"/meego/a/jiraImport\",\"simple_name\":\"a\",\"redirected_from\":\"/meego/a/jiraImport\",\"raw\":\"/meego/a/jiraImport\"}\n"
        );
        let d = decode("/a/_story_resource/detail/1").unwrap();
        assert_eq!(
            (d.work_item_type.as_slice(), d.is_resource),
            (&b"story"[..], true)
        );
        assert_eq!(
            decode("/a/_resource/create").unwrap().work_item_type,
            b"resource"
        );
        assert!(!decode("/a/__resource/create").unwrap().is_resource);
        assert_eq!(decode("/meegox/a").unwrap().url_kind, URL_KIND_UNKNOWN);
        assert_eq!(decode("/a/setting/x/y").unwrap().url_kind, "setting_other");
        assert_eq!(decode("/a/setting/").unwrap().url_kind, "setting_home");
        assert_eq!(
            decode("/a//story/detail/1").unwrap().url_kind,
            URL_KIND_UNKNOWN
        );
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert_eq!(decode(" \t"), Err(UrlDecodeError::Empty));
        assert_eq!(
            decode("not a url").unwrap_err().to_string(),
            "invalid url: parse \"https://not a url\": invalid character \" \" in host name"
        );
        for raw in [
            "%",
            "[",
            "https://[",
            "//[::1",
            "#%",
            "?%zz",
            "\u{0}x",
            "::",
            "a:b:c",
        ] {
            let _ = decode(raw);
        }
    }

    #[test]
    fn table_rows_follow_the_json_order() {
        let table = render(
            &decode("https://h/s/story/detail/9?tab=x").unwrap(),
            UrlFormat::Table,
        );
        assert_eq!(
            table,
            "FIELD           VALUE\nurl_kind        workitem_detail\nhost            h\npathname        /s/story/detail/9\nsimple_name     s\nwork_item_type  story\nwork_item_id    9\nquery.tab       x\nraw             https://h/s/story/detail/9?tab=x\n"
        );
    }
}
