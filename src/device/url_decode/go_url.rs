//! The part of Go's `net/url` (and `net/netip`, for bracketed hosts) that
//! the reference CLI's decoder relies on: `url.Parse` with its error texts,
//! and `URL.Query()`. The reference binary is built with Go 1.26.1 and the
//! GODEBUG defaults of an older module (`urlstrictcolons=0`,
//! `urlmaxqueryparams=0`): the last colon of a host starts its port, and a
//! query has no parameter limit. A bracketed host must be an IPv6 address,
//! as since Go 1.25.2.
//!
//! Only what the decoder reads is kept: the host, the decoded path and the
//! raw query. Errors are the text of Go's `*url.Error`,
//! `parse "<url>": <why>`.

use std::collections::BTreeMap;

use super::go_text::quote;

/// What `url.Parse` yields that the decoder uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParsedUrl {
    /// `URL.Host`: `host[:port]`, unescaped, brackets kept.
    pub host: Vec<u8>,
    /// `URL.Path`: percent-decoded (`%2F` becomes `/`).
    pub path: Vec<u8>,
    /// `URL.RawQuery`.
    pub raw_query: Vec<u8>,
}

/// Which part of a URL is being unescaped (Go's `encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Path,
    Host,
    Zone,
    UserPassword,
    QueryComponent,
    Fragment,
}

/// RFC 3986's unreserved characters, its sub-delims and `:`: what Go lets
/// stand unescaped in both a host and a user info.
fn unreserved_sub_delim_or_colon(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
        )
}

/// `shouldEscape(c, encodeHost)`, which is also Go's answer for zones.
fn host_must_escape(c: u8) -> bool {
    !(unreserved_sub_delim_or_colon(c) || matches!(c, b'[' | b']' | b'<' | b'>' | b'"'))
}

fn unhex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

fn escape_error(s: &[u8]) -> String {
    format!("invalid URL escape {}", quote(s))
}

/// Go's `unescape`: checks every escape first (and, in hosts, every
/// byte), then decodes; `+` is a space only in query components.
fn unescape(s: &[u8], part: Part) -> Result<Vec<u8>, String> {
    let host_like = matches!(part, Part::Host | Part::Zone);
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let well_formed =
                    i + 2 < s.len() && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit();
                if !well_formed {
                    return Err(escape_error(&s[i..s.len().min(i + 3)]));
                }
                let escape = &s[i..i + 3];
                // A host may %-encode only non-ASCII bytes, and %25 (RFC 6874).
                if part == Part::Host && unhex(s[i + 1]) < 8 && escape != b"%25" {
                    return Err(escape_error(escape));
                }
                if part == Part::Zone {
                    let v = (unhex(s[i + 1]) << 4) | unhex(s[i + 2]);
                    if escape != b"%25" && v != b' ' && host_must_escape(v) {
                        return Err(escape_error(escape));
                    }
                }
                i += 3;
            }
            c => {
                if host_like && c < 0x80 && host_must_escape(c) {
                    return Err(format!(
                        "invalid character {} in host name",
                        quote(&s[i..=i])
                    ));
                }
                i += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                out.push((unhex(s[i + 1]) << 4) | unhex(s[i + 2]));
                i += 3;
            }
            b'+' if part == Part::QueryComponent => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Go's `strings.Cut` on one byte.
fn cut(s: &[u8], sep: u8) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&b| b == sep) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `url.Parse`.
pub fn parse(raw: &[u8]) -> Result<ParsedUrl, String> {
    let wrap = |url: &[u8], why: String| format!("parse {}: {why}", quote(url));
    let (without_fragment, fragment) = cut(raw, b'#');
    let url = parse_reference(without_fragment).map_err(|e| wrap(without_fragment, e))?;
    if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
        // The fragment is not reported, but a malformed one fails the parse.
        unescape(fragment, Part::Fragment).map_err(|e| wrap(raw, e))?;
    }
    Ok(url)
}

/// Go's `getScheme`: the scheme (empty if there is none) and the rest.
fn split_scheme(raw: &[u8]) -> Result<(&[u8], &[u8]), String> {
    for (i, &c) in raw.iter().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok((b"", raw)),
        }
    }
    Ok((b"", raw))
}

/// Go's `parse(rawURL, viaRequest=false)`, for a URL without its fragment.
fn parse_reference(raw: &[u8]) -> Result<ParsedUrl, String> {
    if raw.iter().any(|&b| b < b' ' || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let (scheme, rest) = split_scheme(raw)?;
    let mut url = ParsedUrl::default();
    let mut rest = if rest.ends_with(b"?") && rest.iter().filter(|&&b| b == b'?').count() == 1 {
        &rest[..rest.len() - 1]
    } else {
        let (before, query) = cut(rest, b'?');
        url.raw_query = query.unwrap_or_default().to_vec();
        before
    };
    if !rest.starts_with(b"/") {
        if !scheme.is_empty() {
            // `scheme:opaque`: no host, no path.
            return Ok(url);
        }
        // A relative path whose first segment has a colon would read as a scheme.
        if cut(rest, b'/').0.contains(&b':') {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    if (!scheme.is_empty() || !rest.starts_with(b"///")) && rest.starts_with(b"//") {
        let authority_and_path = &rest[2..];
        let end = authority_and_path
            .iter()
            .position(|&b| b == b'/')
            .unwrap_or(authority_and_path.len());
        url.host = parse_authority(&authority_and_path[..end])?;
        rest = &authority_and_path[end..];
    }
    url.path = unescape(rest, Part::Path)?;
    Ok(url)
}

/// Go's `parseAuthority`: the host, after checking the user info.
fn parse_authority(authority: &[u8]) -> Result<Vec<u8>, String> {
    let at = authority.iter().rposition(|&b| b == b'@');
    let host = parse_host(at.map_or(authority, |i| &authority[i + 1..]))?;
    let Some(at) = at else {
        return Ok(host);
    };
    let userinfo = &authority[..at];
    // Go's validUserinfo walks runes, and any non-ASCII rune is refused.
    let valid = userinfo
        .iter()
        .all(|&c| unreserved_sub_delim_or_colon(c) || matches!(c, b'%' | b'@'));
    if !valid {
        return Err("net/url: invalid userinfo".into());
    }
    let (username, password) = cut(userinfo, b':');
    unescape(username, Part::UserPassword)?;
    if let Some(password) = password {
        unescape(password, Part::UserPassword)?;
    }
    Ok(host)
}

/// `""` or `:` followed by digits only.
fn valid_optional_port(port: &[u8]) -> bool {
    match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

fn invalid_port(port: &[u8]) -> String {
    format!("invalid port {} after host", quote(port))
}

/// Go's `parseHost`: `host[:port]` or `[IPv6[%25zone]][:port]`.
fn parse_host(host: &[u8]) -> Result<Vec<u8>, String> {
    match host.iter().rposition(|&b| b == b'[') {
        Some(0) => {
            let close = host
                .iter()
                .rposition(|&b| b == b']')
                .ok_or("missing ']' in host")?;
            let colon_port = &host[close + 1..];
            if !valid_optional_port(colon_port) {
                return Err(invalid_port(colon_port));
            }
            let literal = &host[1..close];
            let unescaped = match find(literal, b"%25") {
                Some(zone) => {
                    let mut address = unescape(&literal[..zone], Part::Host)?;
                    address.extend(unescape(&literal[zone..], Part::Zone)?);
                    address
                }
                None => unescape(literal, Part::Host)?,
            };
            match parse_addr(&unescaped) {
                Err(e) => return Err(format!("invalid host: {e}")),
                Ok(AddrKind::V4) => return Err("invalid IP-literal".into()),
                Ok(AddrKind::V6) => {}
            }
            Ok([b"[".as_slice(), &unescaped, b"]", colon_port].concat())
        }
        Some(_) => Err("invalid IP-literal".into()),
        None => {
            if let Some(colon) = host.iter().rposition(|&b| b == b':') {
                if !valid_optional_port(&host[colon..]) {
                    return Err(invalid_port(&host[colon..]));
                }
            }
            unescape(host, Part::Host)
        }
    }
}

/// `URL.Query()` reduced to the first value of each key, the way the
/// reference CLI reads it. Malformed pairs (a bad escape, a semicolon) are
/// dropped, as Go drops them.
pub fn query_first_values(raw_query: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut values = BTreeMap::new();
    for pair in raw_query.split(|&b| b == b'&') {
        if pair.is_empty() || pair.contains(&b';') {
            continue;
        }
        let (key, value) = cut(pair, b'=');
        let (Ok(key), Ok(value)) = (
            unescape(key, Part::QueryComponent),
            unescape(value.unwrap_or_default(), Part::QueryComponent),
        ) else {
            continue;
        };
        values.entry(key).or_insert(value);
    }
    values
}

/// What `netip.ParseAddr` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddrKind {
    V4,
    V6,
}

/// `netip.ParseAddr`'s error text.
fn addr_error(input: &[u8], why: &str, at: Option<&[u8]>) -> String {
    match at.filter(|a| !a.is_empty()) {
        Some(at) => format!("ParseAddr({}): {why} (at {})", quote(input), quote(at)),
        None => format!("ParseAddr({}): {why}", quote(input)),
    }
}

/// `netip.ParseAddr`: which family, or why not.
fn parse_addr(s: &[u8]) -> Result<AddrKind, String> {
    match s.iter().find(|&&c| matches!(c, b'.' | b':' | b'%')) {
        Some(b'.') => ipv4_fields(s, s).map(|()| AddrKind::V4),
        Some(b':') => parse_ipv6(s).map(|()| AddrKind::V6),
        Some(_) => Err(addr_error(s, "missing IPv6 address", None)),
        None => Err(addr_error(s, "unable to parse IP", None)),
    }
}

/// Go's `parseIPv4Fields` over `part` (the whole input, or the tail of an
/// IPv6 address); errors quote `input`.
fn ipv4_fields(input: &[u8], part: &[u8]) -> Result<(), String> {
    let (mut value, mut dots, mut digits) = (0u32, 0, 0);
    for (i, &c) in part.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                if digits == 1 && value == 0 {
                    return Err(addr_error(
                        input,
                        "IPv4 field has octet with leading zero",
                        None,
                    ));
                }
                value = value * 10 + u32::from(c - b'0');
                digits += 1;
                if value > 255 {
                    return Err(addr_error(input, "IPv4 field has value >255", None));
                }
            }
            b'.' => {
                if i == 0 || i == part.len() - 1 || part[i - 1] == b'.' {
                    return Err(addr_error(
                        input,
                        "IPv4 field must have at least one digit",
                        Some(&part[i..]),
                    ));
                }
                if dots == 3 {
                    return Err(addr_error(input, "IPv4 address too long", None));
                }
                dots += 1;
                value = 0;
                digits = 0;
            }
            _ => return Err(addr_error(input, "unexpected character", Some(&part[i..]))),
        }
    }
    if dots < 3 {
        return Err(addr_error(input, "IPv4 address too short", None));
    }
    Ok(())
}

/// Go's `parseIPv6`, checking only.
fn parse_ipv6(input: &[u8]) -> Result<(), String> {
    let fail = |why: &str, at: Option<&[u8]>| Err(addr_error(input, why, at));
    let (mut s, zone) = match cut(input, b'%') {
        (_, Some(b"")) => return fail("zone must be a non-empty string", None),
        (address, zone) => (address, zone.unwrap_or_default()),
    };
    let mut ellipsis: Option<usize> = None;
    if s.starts_with(b"::") {
        ellipsis = Some(0);
        s = &s[2..];
        if s.is_empty() {
            return Ok(());
        }
    }
    let mut filled = 0;
    while filled < 16 {
        let mut digits = 0;
        while let Some(&c) = s.get(digits) {
            if !c.is_ascii_hexdigit() {
                break;
            }
            if digits > 3 {
                return fail("each group must have 4 or less digits", Some(s));
            }
            digits += 1;
        }
        if digits == 0 {
            return fail(
                "each colon-separated field must have at least one digit",
                Some(s),
            );
        }
        if s.get(digits) == Some(&b'.') {
            if ellipsis.is_none() && filled != 12 {
                return fail(
                    "embedded IPv4 address must replace the final 2 fields of the address",
                    Some(s),
                );
            }
            if filled + 4 > 16 {
                return fail(
                    "too many hex fields to fit an embedded IPv4 at the end of the address",
                    Some(s),
                );
            }
            let end = input.len() - if zone.is_empty() { 0 } else { zone.len() + 1 };
            ipv4_fields(input, &input[end - s.len()..end])?;
            s = b"";
            filled += 4;
            break;
        }
        filled += 2;
        s = &s[digits..];
        if s.is_empty() {
            break;
        }
        if s[0] != b':' {
            return fail("unexpected character, want colon", Some(s));
        }
        if s.len() == 1 {
            return fail("colon must be followed by more characters", Some(s));
        }
        s = &s[1..];
        if s[0] == b':' {
            if ellipsis.is_some() {
                return fail("multiple :: in address", Some(s));
            }
            ellipsis = Some(filled);
            s = &s[1..];
            if s.is_empty() {
                break;
            }
        }
    }
    if !s.is_empty() {
        return fail("trailing garbage after address", Some(s));
    }
    match (filled < 16, ellipsis) {
        (true, None) => fail("address string too short", None),
        (false, Some(_)) => fail("the :: must expand to at least one field of zeros", None),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(raw: &str) -> Result<String, String> {
        parse(raw.as_bytes()).map(|u| String::from_utf8(u.host).unwrap())
    }

    #[test]
    fn hosts_ports_and_literals() {
        assert_eq!(host_of("https://h:80/x").unwrap(), "h:80");
        // The last colon starts the port (urlstrictcolons=0).
        assert_eq!(host_of("https://a:1:2/x").unwrap(), "a:1:2");
        assert_eq!(host_of("https://[::1%25en0]:8/").unwrap(), "[::1%en0]:8");
        assert_eq!(host_of("https://h%C3%BC/").unwrap(), "hü");
        assert_eq!(
            host_of("https://a:b:c/x").unwrap_err(),
            "parse \"https://a:b:c/x\": invalid port \":c\" after host"
        );
        assert_eq!(
            host_of("https://[1.2.3.4]/").unwrap_err(),
            "parse \"https://[1.2.3.4]/\": invalid IP-literal"
        );
        assert_eq!(
            host_of("https://[v1.x]/").unwrap_err(),
            "parse \"https://[v1.x]/\": invalid host: ParseAddr(\"v1.x\"): unexpected character (at \"v1.x\")"
        );
        assert_eq!(
            host_of("https://h%41/").unwrap_err(),
            "parse \"https://h%41/\": invalid URL escape \"%41\""
        );
    }

    #[test]
    fn paths_are_decoded_and_fragments_checked() {
        let u = parse(b"https://h/a%2Fb%FF?x=1#f").unwrap();
        assert_eq!(u.path, b"/a/b\xff");
        assert_eq!(u.raw_query, b"x=1");
        assert_eq!(
            parse(b"https://h/x#a%zz").unwrap_err(),
            "parse \"https://h/x#a%zz\": invalid URL escape \"%zz\""
        );
        assert_eq!(
            parse(b"a b:c").unwrap_err(),
            "parse \"a b:c\": first path segment in URL cannot contain colon"
        );
    }

    #[test]
    fn queries_keep_the_first_well_formed_value() {
        let q = query_first_values(b"a=1&a=2&b=%zz&c;=1&d=1+2&e&=v&&f%3D=x");
        let q: Vec<(&[u8], &[u8])> = q.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(
            q,
            [
                (&b""[..], &b"v"[..]),
                (b"a", b"1"),
                (b"d", b"1 2"),
                (b"e", b""),
                (b"f=", b"x"),
            ]
        );
    }

    #[test]
    fn ipv6_errors_name_the_rest() {
        assert_eq!(
            parse_addr(b"1:2:3:4:5:6:7:8:9"),
            Err(
                "ParseAddr(\"1:2:3:4:5:6:7:8:9\"): trailing garbage after address (at \"9\")"
                    .into()
            )
        );
        assert_eq!(parse_addr(b"::ffff:1.2.3.4"), Ok(AddrKind::V6));
        assert_eq!(
            parse_addr(b"::1%"),
            Err("ParseAddr(\"::1%\"): zone must be a non-empty string".into())
        );
    }
}
