//! Property tests (proptest) for the parsers of untrusted input: the
//! configuration loader, log templates and what they render of a client's
//! bytes, X-Forwarded-For, path normalization, PURGE patterns,
//! Cache-Control and the request lines of refused heads. Each property holds for every input proptest generates
//! (256 cases per property, shrunk to a minimal counterexample on failure).

use crate::cache::policy::directives;
use crate::cache::purge::UrlMatch;
use crate::config::{Cidr, ConfigErrors};
use crate::logs::{Format, Record};
use crate::request::forwarded::client_ip;
use crate::waf::paths::normalize;
use proptest::prelude::*;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

// ---------------------------------------------------------------- config

/// A YAML value of the configuration's shape: known keys (and a few
/// unknown ones) with values of any type, nested a few levels.
fn yaml_value() -> impl Strategy<Value = serde_yaml::Value> {
    use serde_yaml::Value;
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        (-1e6f64..1e6).prop_map(|f| Value::Number(f.into())),
        prop_oneof![
            "[ -~]{0,20}",
            Just("127.0.0.1:0".to_string()),
            Just("10s".to_string()),
            Just("0".to_string()),
            Just("-1s".to_string()),
            Just("64MiB".to_string()),
            Just("redis://127.0.0.1:1/0".to_string()),
            Just("{status} {request}".to_string()),
            Just("*.example.org".to_string()),
            Just("a.example.org".to_string()),
            Just("disabled".to_string()),
            Just("standard".to_string()),
            Just("/nonexistent/file.pem".to_string()),
            Just("10.0.0.0/8".to_string()),
        ]
        .prop_map(Value::String),
    ];
    const KEYS: &[&str] = &[
        "listen",
        "threads",
        "grace_period",
        "admin",
        "default_site",
        "tls",
        "limits",
        "access_log",
        "cache",
        "waf",
        "accounts",
        "supervisor",
        "trusted_proxies",
        "alice",
        "bob",
        "log_dir",
        "sites",
        "blog",
        "addresses",
        "upstream",
        "address",
        "command",
        "working_dir",
        "environment",
        "idle_timeout",
        "enabled",
        "ttl",
        "profile",
        "exclude_rules",
        "exclude_paths",
        "exclude_ips",
        "certificate",
        "key",
        "https_redirect",
        "hsts",
        "file",
        "format",
        "storage",
        "memory",
        "redis",
        "url",
        "max_size",
        "purge_allow",
        "default_certificate",
        "acme",
        "port_range",
        "unknown",
    ];
    scalar.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Mapping(
                    kv.into_iter()
                        .map(|(k, v)| (Value::String(k.to_string()), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn load(text: &str) -> Result<(), ConfigErrors> {
    let dir = std::env::temp_dir();
    crate::sites::parse(&dir.join("edgeward-proptest.yaml"), text).map(drop)
}

fn every_error_has_a_position(r: Result<(), ConfigErrors>) -> Result<(), TestCaseError> {
    if let Err(errors) = r {
        prop_assert!(!errors.0.is_empty(), "an Err without any error");
        for e in &errors.0 {
            prop_assert!(e.line >= 1 && e.col >= 1, "no position: {e}");
            prop_assert!(!e.message.is_empty(), "no message at {}:{}", e.line, e.col);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn config_text_of_any_bytes_never_panics(text in "\\PC{0,300}") {
        every_error_has_a_position(load(&text))?;
    }

    #[test]
    fn config_of_the_right_shape_never_panics(doc in yaml_value()) {
        let text = serde_yaml::to_string(&doc).unwrap();
        every_error_has_a_position(load(&text))?;
    }

    #[test]
    fn config_with_a_valid_core_and_random_sites(sites in yaml_value()) {
        let mut root = serde_yaml::Mapping::new();
        root.insert("listen".into(), "127.0.0.1:0".into());
        let mut account = serde_yaml::Mapping::new();
        account.insert("log_dir".into(), "/nonexistent/logs".into());
        account.insert("sites".into(), sites);
        let mut accounts = serde_yaml::Mapping::new();
        accounts.insert("alice".into(), account.into());
        root.insert("accounts".into(), accounts.into());
        let text = serde_yaml::to_string(&root).unwrap();
        every_error_has_a_position(load(&text))?;
    }
}

// ---------------------------------------------------------------- logs

fn at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000)
}

/// A template from the known variables and printable text (an operator's
/// file), or any text at all.
fn template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[ -z|~]{0,8}",
        prop::sample::select(vec![
            "{client_ip}",
            "{completion_date}",
            "{completion_date:%d/%b/%Y:%H:%M:%S %z}",
            "{duration}",
            "{peer_ip}",
            "{protocol}",
            "{referer}",
            "{request}",
            "{request_header:user-agent}",
            "{request_header:x-evil}",
            "{request_hostname}",
            "{request_id}",
            "{request_method}",
            "{request_path}",
            "{request_protocol}",
            "{request_time}",
            "{response_header:content-type}",
            "{response_size}",
            "{site}",
            "{ssl_version}",
            "{status}",
            "{user_agent}",
        ])
        .prop_map(str::to_string),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

fn header_map(values: &[(&'static str, Vec<u8>)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in values {
        if let Ok(v) = http::HeaderValue::from_bytes(v) {
            h.append(*k, v);
        }
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_template_parses_or_fails_without_panic(t in "\\PC{0,60}") {
        if let Ok(f) = Format::parse(&t) {
            let req = http::HeaderMap::new();
            let record = Record {
                method: b"GET", raw_path: b"/", request_protocol: "HTTP/1.1",
                request_headers: Some(&req), response_headers: None, status: 200,
                peer_ip: None, client_ip: None, host: None, request_id: "id", site: "a/b",
                scheme: "http", ssl_version: None, started: at(), completed: at(),
                duration: Duration::ZERO, body_bytes: 0,
            };
            let mut out = Vec::new();
            f.render(&record, &mut out);
        }
    }

    /// Whatever bytes a client sends, a line rendered from an operator's
    /// template stays one line of printable ASCII, and the json format
    /// stays one valid JSON object.
    #[test]
    fn client_bytes_never_break_a_log_line(
        t in template(),
        method in prop::collection::vec(any::<u8>(), 0..12),
        path in prop::collection::vec(any::<u8>(), 0..40),
        agent in prop::collection::vec(any::<u8>(), 0..40),
        evil in prop::collection::vec(any::<u8>(), 0..40),
        host in "\\PC{0,20}",
    ) {
        let req = header_map(&[("user-agent", agent), ("referer", evil.clone()), ("x-evil", evil)]);
        let resp = header_map(&[("content-type", b"text/html\x7f\xff".to_vec())]);
        let record = Record {
            method: &method, raw_path: &path, request_protocol: "HTTP/1.1",
            request_headers: Some(&req), response_headers: Some(&resp), status: 200,
            peer_ip: None, client_ip: Some("192.0.2.1".parse().unwrap()), host: Some(&host),
            request_id: "id", site: "a/b", scheme: "https", ssl_version: Some("TLSv1.3"),
            started: at(), completed: at(), duration: Duration::from_millis(3), body_bytes: 7,
        };
        let f = Format::parse(&t).unwrap();
        let mut out = Vec::new();
        f.render(&record, &mut out);
        let body = out.strip_suffix(b"\n").unwrap_or(&out);
        prop_assert!(body.iter().all(|b| (0x20..0x7f).contains(b)), "{:?}", String::from_utf8_lossy(&out));
        let json = Format::parse("json").unwrap();
        let mut out = Vec::new();
        json.render(&record, &mut out);
        let line = std::str::from_utf8(&out).expect("UTF-8");
        prop_assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        prop_assert!(v.is_object());
    }
}

// ---------------------------------------------------------------- X-Forwarded-For

fn hop() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..=255, 0u8..=255).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
        (0u8..=255).prop_map(|a| format!("203.0.113.{a}")),
        Just("::1".to_string()),
        Just("::ffff:10.0.0.1".to_string()),
        "[ -~]{0,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The client is the peer, or an address some trusted hop wrote: never
    /// one left of a hop that is not a trusted proxy or not an address.
    #[test]
    fn forwarded_for_never_believes_past_an_untrusted_hop(
        peer_trusted in any::<bool>(),
        headers in prop::collection::vec(prop::collection::vec(hop(), 0..4), 0..3),
    ) {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = if peer_trusted { "10.9.9.9" } else { "198.51.100.7" }.parse().unwrap();
        let joined: Vec<String> = headers.iter().map(|h| h.join(", ")).collect();
        let values: Vec<&[u8]> = joined.iter().map(|s| s.as_bytes()).collect();
        let got = client_ip(Some(peer), &values, &trusted).unwrap();
        if !peer_trusted {
            prop_assert_eq!(got, peer);
            return Ok(());
        }
        // The reference: walk the hops right to left.
        let hops: Vec<&str> = joined.iter().flat_map(|h| h.split(',')).collect();
        let mut want = peer;
        for h in hops.iter().rev() {
            match h.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    let ip = crate::config::canonical(ip);
                    want = ip;
                    if !trusted[0].contains(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        prop_assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------- paths

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn normalized_paths_are_rooted_idempotent_and_never_climb(
        target in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..60),
            prop::collection::vec(prop::sample::select(vec![
                "/", "..", ".", "%2e", "%2E%2e", "%2f", "a", "b", "//", "?", "#", "%", "%zz", "\\",
                "%25", "%2541", "%3f", "%23", "41",
            ]), 0..14).prop_map(|p| p.concat().into_bytes()),
        ],
    ) {
        let once = normalize(&target);
        prop_assert_eq!(once.first(), Some(&b'/'), "{:?}", String::from_utf8_lossy(&once));
        prop_assert_eq!(normalize(&once), once.clone(), "not idempotent");
        for seg in once.split(|&b| b == b'/') {
            prop_assert!(seg != b".." && seg != b".", "{:?}", String::from_utf8_lossy(&once));
        }
        prop_assert!(!once.windows(2).any(|w| w == b"//"), "{:?}", String::from_utf8_lossy(&once));
    }
}

// ---------------------------------------------------------------- PURGE

/// The reference `*` glob: plain recursion (exponential, small inputs only).
fn glob_reference(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_reference(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob_reference(rest, &s[1..]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn purge_patterns_match_as_the_reference(
        pattern in "[ab*/]{0,10}",
        url in "[ab/]{0,12}",
    ) {
        let m = UrlMatch::Wildcard(pattern.clone());
        prop_assert_eq!(m.matches(&url), glob_reference(pattern.as_bytes(), url.as_bytes()));
        for m in [UrlMatch::Wildcard(pattern.clone()), UrlMatch::Prefix(pattern.clone()), UrlMatch::Exact(pattern)] {
            if m.matches(&url) {
                prop_assert!(url.starts_with(m.literal_prefix()), "{m:?} {url}");
            }
        }
    }

    #[test]
    fn long_wildcards_stay_linear(stars in 1usize..40, len in 0usize..4000) {
        // A pattern of many stars against a long URL that almost matches:
        // the iterative matcher must answer (a backtracking one would not).
        let pattern = format!("{}b", "a*".repeat(stars));
        let url = "a".repeat(len);
        prop_assert!(!UrlMatch::Wildcard(pattern).matches(&url));
    }
}

// ---------------------------------------------------------------- Cache-Control

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cache_control_of_any_bytes_never_panics(v in prop::collection::vec(any::<u8>(), 0..80)) {
        let mut h = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_bytes(&v) {
            h.insert("cache-control", v);
        }
        for d in directives(&h, "cache-control") {
            prop_assert_eq!(d.name.clone(), d.name.to_ascii_lowercase());
        }
    }

    /// Well-formed directives come back as written (names lower-cased,
    /// quoted values unquoted).
    #[test]
    fn cache_control_directives_round_trip(
        ds in prop::collection::vec(("[a-zA-Z-]{1,10}", prop::option::of("[0-9]{1,5}|\"[ a-z,=]{0,8}\"")), 1..6)
    ) {
        let text = ds.iter().map(|(n, v)| match v {
            Some(v) => format!("{n}={v}"),
            None => n.clone(),
        }).collect::<Vec<_>>().join(", ");
        let mut h = http::HeaderMap::new();
        h.insert("cache-control", http::HeaderValue::from_str(&text).unwrap());
        let got = directives(&h, "cache-control");
        prop_assert_eq!(got.len(), ds.len(), "{}", text);
        for (d, (n, v)) in got.iter().zip(&ds) {
            prop_assert_eq!(&d.name, &n.to_ascii_lowercase());
            let want = v.as_ref().map(|v| v.trim_matches('"').to_string());
            prop_assert_eq!(&d.value, &want, "{}", text);
        }
    }
}

// ---------------------------------------------------------------- refused request lines

proptest! {
    /// The method and target logged for a head the reader refused are
    /// pieces of what was sent, without the separating spaces.
    #[test]
    fn refused_request_lines(line in prop::collection::vec(any::<u8>(), 0..64)) {
        let (m, t, _) = crate::limits::refused::split_request_line(&line);
        prop_assert!(m.len() + t.len() <= line.len());
        prop_assert!(!m.contains(&b' ') && !t.contains(&b' '));
    }
}
