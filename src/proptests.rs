//! Property tests of the parsers of untrusted input: the configuration
//! loader (arbitrary YAML never panics; every error has a position), access
//! log templates (parse and render never panic; a line is one line),
//! `X-Forwarded-For` (the client is the peer or an address of the list),
//! path normalization (rooted, no dot segments, idempotent), PURGE
//! patterns, Cache-Control, request lines of refused heads.

use crate::cache::{Directive, UrlMatch, directives};
use crate::config::Cidr;
use crate::logs::{Format, Record};
use crate::request::client_ip;
use proptest::prelude::*;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

// ------------------------------------------------------------ configuration

/// Keys the loader knows, so that generated documents go deep into it.
const KEYS: &[&str] = &[
    "listen",
    "threads",
    "grace_period",
    "admin",
    "default_site",
    "trusted_proxies",
    "cache",
    "waf",
    "tls",
    "limits",
    "access_log",
    "accounts",
    "alice",
    "log_dir",
    "sites",
    "blog",
    "addresses",
    "upstream",
    "address",
    "command",
    "header_timeout",
    "max_header_size",
    "max_body_size",
    "max_connections",
    "file",
    "format",
    "enabled",
    "ttl",
    "storage",
    "memory",
    "max_size",
    "purge_allow",
    "profile",
    "exclude_paths",
    "https_redirect",
    "hsts",
    "supervisor",
    "port_range",
    "bogus",
];

/// Scalars: interesting values and short text (no `host:port` that could
/// send the loader to DNS).
fn scalar() -> impl Strategy<Value = serde_yaml::Value> {
    use serde_yaml::Value;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|n| Value::Number(n.into())),
        prop::sample::select(vec![
            "10s",
            "0s",
            "250ms",
            "1h",
            "-1s",
            "1KiB",
            "64MiB",
            "0",
            "127.0.0.1:1",
            "[::1]:1",
            "/tmp/x",
            "x.log",
            "standard",
            "{status",
            "{request_header:}",
            "*.a.test",
            "a.test",
            "10.0.0.0/8",
            "memory",
            "redis",
            "20000-29999",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        "[a-z0-9 ./*{}_-]{0,12}".prop_map(Value::String),
    ]
}

fn yaml() -> impl Strategy<Value = serde_yaml::Value> {
    use serde_yaml::{Mapping, Value};
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec(
                (
                    prop_oneof![
                        3 => prop::sample::select(KEYS).prop_map(|k| Value::String(k.to_string())),
                        1 => scalar(),
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Mapping(kv.into_iter().collect::<Mapping>())),
        ]
    })
}

/// Every error of a loaded text has a line and a column.
fn check_loader(text: &str) -> Result<(), TestCaseError> {
    if let Err(errors) = crate::sites::parse(Path::new("p.yaml"), text) {
        prop_assert!(!errors.0.is_empty());
        for e in &errors.0 {
            prop_assert!(e.line > 0 && e.col > 0, "no position: {e}\n---\n{text}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_documents_never_panic_and_errors_have_positions(doc in yaml()) {
        let text = serde_yaml::to_string(&doc).unwrap_or_default();
        check_loader(&text)?;
    }

    #[test]
    fn config_text_never_panics_and_errors_have_positions(
        text in "[a-z:{}\\[\\],'\"&*!|>#%@` \t\n-]{0,80}"
    ) {
        check_loader(&text)?;
    }
}

// ------------------------------------------------------------ log templates

fn record<'a>(method: &'a [u8], path: &'a [u8], headers: &'a http::HeaderMap) -> Record<'a> {
    Record {
        method,
        raw_path: path,
        request_protocol: "HTTP/1.1",
        request_headers: Some(headers),
        response_headers: Some(headers),
        status: 200,
        peer_ip: None,
        client_ip: None,
        host: Some("a.test"),
        request_id: "id",
        site: "a/b",
        scheme: "http",
        ssl_version: None,
        started: SystemTime::UNIX_EPOCH,
        completed: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        duration: Duration::from_millis(3),
        body_bytes: 10,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any template parses or is refused with a column inside it; any
    /// client bytes render as one line.
    #[test]
    fn log_templates(
        spec in "([a-z_ \"\\[\\]-]|\\{[a-z_]{0,16}(:[%a-zA-Z:/ -]{0,12})?\\}?){0,8}",
        method in prop::collection::vec(any::<u8>(), 0..12),
        path in prop::collection::vec(any::<u8>(), 0..40),
        ua in prop::collection::vec(32u8..127, 0..20),
    ) {
        match Format::parse(&spec) {
            Err(e) => prop_assert!(e.column <= spec.chars().count() + 1, "{e:?}"),
            Ok(f) => {
                let mut headers = http::HeaderMap::new();
                if let Ok(v) = http::HeaderValue::from_bytes(&ua) {
                    headers.insert(http::header::USER_AGENT, v);
                }
                let mut out = Vec::new();
                f.render(&record(&method, &path, &headers), &mut out);
                let body = out.strip_suffix(b"\n").unwrap_or(&out);
                prop_assert!(
                    !body.iter().any(|b| *b == b'\n' || *b == b'\r' || *b == 0x1b),
                    "control bytes in {:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }
}

// ------------------------------------------------------------ X-Forwarded-For

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..4, any::<u8>()).prop_map(|(a, b)| IpAddr::from([10, a, 0, b])),
        any::<u8>().prop_map(|b| IpAddr::from([203, 0, 113, b])),
        any::<u16>().prop_map(|b| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, b])),
    ]
}

fn hop() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ip().prop_map(|i| i.to_string()),
        1 => "[ a-z0-9.:,\\[\\]-]{0,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The client is the peer, or an address of the list that is either
    /// untrusted or reached by reading trusted hops only from the right.
    #[test]
    fn forwarded_for_client(
        peer in ip(),
        values in prop::collection::vec(prop::collection::vec(hop(), 0..4), 0..3),
        trust_10 in any::<bool>(),
    ) {
        let trusted: Vec<Cidr> = if trust_10 {
            vec!["10.0.0.0/8".parse().unwrap()]
        } else {
            Vec::new()
        };
        let joined: Vec<String> = values.iter().map(|v| v.join(",")).collect();
        let xff: Vec<&[u8]> = joined.iter().map(|s| s.as_bytes()).collect();
        let client = client_ip(Some(peer), &xff, &trusted).unwrap();
        let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
        if !is_trusted(peer) {
            prop_assert_eq!(client, peer);
        } else {
            // Walk from the right as a trusted proxy chain would.
            let mut expect = peer;
            'walk: for v in joined.iter().rev() {
                for part in v.rsplit(',') {
                    match part.trim().parse::<IpAddr>() {
                        Ok(ip) if is_trusted(ip) => expect = ip,
                        Ok(ip) => { expect = ip; break 'walk; }
                        Err(_) => break 'walk,
                    }
                }
            }
            prop_assert_eq!(client, expect);
        }
        // What goes upstream ends with the peer.
        let sent = crate::request::forwarded_for(xff.iter().copied(), peer);
        prop_assert!(sent.ends_with(&peer.to_string()), "{}", sent);
    }
}

// ------------------------------------------------------------ path normalization

/// Path bytes, including escapes of `.`, `/` and `\`. Not `%25`, `%3F`,
/// `%23`: one decoding of those yields `%`, `?`, `#`, which a second
/// normalization would read again (the upstream decodes once, so does the
/// WAF; normalization is idempotent on everything else).
fn target() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "/", "//", "\\", ".", "..", "/../", "/./", "%2e", "%2E%2e", "%2f", "%5c", "a", "b",
                "wp-admin", "%77p", "?", "?q=/../x", "#f", "http://h", "%", "%zz",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            "[a-z0-9._~-]{1,4}".prop_map(|s| s.into_bytes()),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn path_normalization(t in target()) {
        let n = crate::waf::normalize_path(&t);
        prop_assert!(n.starts_with(b"/"), "{:?}", String::from_utf8_lossy(&n));
        for seg in n.split(|b| *b == b'/').skip(1) {
            prop_assert!(seg != b".." && seg != b".", "{:?}", String::from_utf8_lossy(&n));
        }
        prop_assert!(!n.windows(2).any(|w| w == b"//"), "{:?}", String::from_utf8_lossy(&n));
        prop_assert_eq!(crate::waf::normalize_path(&n), n);
    }
}

// ------------------------------------------------------------ PURGE patterns

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// A wildcard pattern matches exactly what the equivalent regex does;
    /// every match starts with the literal prefix.
    #[test]
    fn purge_patterns(pat in "[ab*/]{0,8}", url in "[ab/]{0,10}") {
        let m = UrlMatch::Wildcard(pat.clone());
        let re = format!(
            "^{}$",
            pat.split('*').map(regex_escape).collect::<Vec<_>>().join(".*")
        );
        let expect = regex_match(&re, &url);
        prop_assert_eq!(m.matches(&url), expect, "{} ~ {}", pat, url);
        if m.matches(&url) {
            prop_assert!(url.starts_with(m.literal_prefix()));
        }
        let p = UrlMatch::Prefix(pat.clone());
        prop_assert_eq!(p.matches(&url), url.starts_with(&pat));
    }
}

fn regex_escape(s: &str) -> String {
    s.to_string() // the alphabet has no regex metacharacters besides `*`
}

/// A tiny matcher for `^lit(.*lit)*$` patterns: the reference for `glob`.
fn regex_match(re: &str, s: &str) -> bool {
    let body = &re[1..re.len() - 1];
    let parts: Vec<&str> = body.split(".*").collect();
    if parts.len() == 1 {
        return s == parts[0];
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first)
        || !s[first.len()..].ends_with(last)
        || s.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

// ------------------------------------------------------------ Cache-Control

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any header value parses (malformed parts skipped); names are lower
    /// case tokens, never empty; well-formed directives are all found.
    #[test]
    fn cache_control(
        value in "[a-zA-Z0-9=,\" \\\\-]{0,40}",
        max_age in any::<u32>(),
    ) {
        let mut h = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            h.append(http::header::CACHE_CONTROL, v);
        }
        h.append(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_str(&format!("max-age={max_age}, no-store")).unwrap(),
        );
        let d: Vec<Directive> = directives(&h, "cache-control");
        for x in &d {
            prop_assert!(!x.name.is_empty());
            prop_assert_eq!(x.name.clone(), x.name.to_ascii_lowercase());
        }
        prop_assert!(d.iter().any(|x| x.name == "max-age" && x.value.as_deref() == Some(max_age.to_string().as_str())));
        prop_assert!(d.iter().any(|x| x.name == "no-store"));
    }
}

// ------------------------------------------------------------ refused request lines

proptest! {
    #[test]
    fn refused_request_lines(line in prop::collection::vec(any::<u8>(), 0..64)) {
        let (m, t, _) = crate::limits::refused::split_request_line(&line);
        prop_assert!(m.len() + t.len() <= line.len());
        prop_assert!(!m.contains(&b' ') && !t.contains(&b' '));
    }
}
