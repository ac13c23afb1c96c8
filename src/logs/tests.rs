use super::*;
use chrono::TimeZone;
use std::time::{Duration, UNIX_EPOCH};

/// 17/Feb/2022:14:19:01 +0100 is 13:19:01 UTC.
fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_645_103_941)
}

fn local(fmt: &str) -> String {
    chrono::Local
        .timestamp_opt(1_645_103_941, 0)
        .unwrap()
        .format(fmt)
        .to_string()
}

fn headers(pairs: &[(&str, &[u8])]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

fn record<'a>(req: &'a http::HeaderMap, resp: &'a http::HeaderMap) -> Record<'a> {
    Record {
        method: b"GET",
        raw_path: b"/2022/02/01/a/",
        request_protocol: "HTTP/2.0",
        request_headers: Some(req),
        response_headers: Some(resp),
        status: 200,
        peer_ip: Some("10.0.0.2".parse().unwrap()),
        client_ip: Some("198.51.100.42".parse().unwrap()),
        host: Some("blog.example.com"),
        request_id: "abc123",
        site: "alice/blog",
        scheme: "https",
        ssl_version: Some("TLSv1.3"),
        started: at() - Duration::from_micros(128_109),
        completed: at(),
        duration: Duration::from_micros(128_109),
        body_bytes: 16634,
    }
}

fn render(spec: &str, r: &Record) -> String {
    let mut out = Vec::new();
    Format::parse(spec).unwrap().render(r, &mut out);
    String::from_utf8(out).unwrap()
}

fn req_headers() -> http::HeaderMap {
    headers(&[
        ("referer", b"https://blog.example.com/"),
        ("user-agent", b"Mozilla/5.0 (X11; Linux x86_64)"),
        ("x-custom", b"v1"),
    ])
}

#[test]
fn standard_and_advanced_golden_lines() {
    let (req, resp) = (req_headers(), headers(&[("content-type", b"text/html")]));
    let r = record(&req, &resp);
    let date = local("%d/%b/%Y:%H:%M:%S %z");
    let standard_line = format!(
        "blog.example.com 198.51.100.42 - - [{date}] \"GET /2022/02/01/a/ HTTP/2.0\" 200 16634 \"https://blog.example.com/\" \"Mozilla/5.0 (X11; Linux x86_64)\"\n"
    );
    assert_eq!(render("standard", &r), standard_line);
    assert_eq!(
        render("advanced", &r),
        format!(
            "blog.example.com 198.51.100.42 - - [{date}] \"GET /2022/02/01/a/ HTTP/2.0\" 200 16634 \"https://blog.example.com/\" \"Mozilla/5.0 (X11; Linux x86_64)\" https 0.128109\n"
        )
    );
    // The standard preset is exactly PRODUCT.md's template (copied here, not
    // taken from the code): the template renders the same golden line.
    let product_md = r#"{request_hostname} {client_ip} - - [{completion_date:%d/%b/%Y:%H:%M:%S %z}] "{request}" {status} {response_size} "{referer}" "{user_agent}""#;
    assert_eq!(STANDARD, product_md);
    assert_eq!(render(product_md, &r), standard_line);
}

#[test]
fn every_variable() {
    let (req, resp) = (
        req_headers(),
        headers(&[("content-type", b"text/html"), ("x-cache", b"HIT")]),
    );
    let r = record(&req, &resp);
    let cases: &[(&str, String)] = &[
        ("{client_ip}", "198.51.100.42".into()),
        ("{completion_date}", local("%d/%b/%Y:%H:%M:%S %z")),
        ("{completion_date:%Y-%m-%d}", local("%Y-%m-%d")),
        ("{completion_date:{%Y-%m-%d %H}}", local("%Y-%m-%d %H")),
        ("{duration}", "0.128109".into()),
        ("{peer_ip}", "10.0.0.2".into()),
        ("{protocol}", "https".into()),
        ("{referer}", "https://blog.example.com/".into()),
        ("{request}", "GET /2022/02/01/a/ HTTP/2.0".into()),
        ("{request_header:X-Custom}", "v1".into()),
        ("{request_header:x-missing}", "-".into()),
        ("{request_header:x-request-id}", "abc123".into()),
        ("{request_hostname}", "blog.example.com".into()),
        ("{request_id}", "abc123".into()),
        ("{request_method}", "GET".into()),
        ("{request_path}", "/2022/02/01/a/".into()),
        ("{request_protocol}", "HTTP/2.0".into()),
        ("{response_header:x-cache}", "HIT".into()),
        ("{response_header:x-none}", "-".into()),
        ("{response_size}", "16634".into()),
        ("{site}", "alice/blog".into()),
        ("{ssl_version}", "TLSv1.3".into()),
        ("{status}", "200".into()),
        ("{user_agent}", "Mozilla/5.0 (X11; Linux x86_64)".into()),
        ("{{literal}} {status}", "{literal} 200".into()),
    ];
    for (spec, want) in cases {
        assert_eq!(render(spec, &r), format!("{want}\n"), "{spec}");
    }
    // request_time is the start: 128 ms before completion, same second here.
    assert_eq!(
        render("{request_time:%s}", &r),
        format!("{}\n", 1_645_103_941 - 1)
    );
}

#[test]
fn missing_values_print_a_dash() {
    let (req, resp) = (http::HeaderMap::new(), http::HeaderMap::new());
    let mut r = record(&req, &resp);
    r.client_ip = None;
    r.host = None;
    assert_eq!(
        render(
            "{client_ip} {request_hostname} {referer} {user_agent} {response_header:server}",
            &r
        ),
        "- - - - -\n"
    );
}

#[test]
fn clients_cannot_forge_lines_or_fields() {
    let req = headers(&[
        ("user-agent", b"evil\" \"x\\"),
        ("referer", &[0xff, 0xfe, b'a']),
    ]);
    let resp = http::HeaderMap::new();
    let mut r = record(&req, &resp);
    r.raw_path = b"/a%0d%0a\"b\r\nforged";
    let line = render("standard", &r);
    assert_eq!(line.matches('\n').count(), 1, "{line}");
    assert!(
        line.contains("\"GET /a%0d%0a\\x22b\\x0D\\x0Aforged HTTP/2.0\""),
        "{line}"
    );
    assert!(line.contains("\"evil\\x22 \\x22x\\x5C\""), "{line}");
    assert!(line.contains("\"\\xFF\\xFEa\""), "{line}");
    // Exactly the 6 quotes of the format remain unescaped.
    assert_eq!(line.matches('"').count(), 6, "{line}");
}

#[test]
fn json_preset_is_always_valid_json() {
    let req = headers(&[("user-agent", &[b'a', 0xff, b'"', b'\\', b'\t'])]);
    let resp = http::HeaderMap::new();
    let mut r = record(&req, &resp);
    r.raw_path = b"/\x01\"x";
    r.host = None;
    let line = render("json", &r);
    assert!(
        line.ends_with("}\n") && line.matches('\n').count() == 1,
        "{line}"
    );
    let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("valid JSON");
    assert_eq!(v["status"], 200);
    assert_eq!(v["size"], 16634);
    assert_eq!(v["site"], "alice/blog");
    assert_eq!(v["request_id"], "abc123");
    assert_eq!(v["client_ip"], "198.51.100.42");
    assert_eq!(v["host"], serde_json::Value::Null);
    assert_eq!(v["path"], "/\u{1}\"x");
    assert_eq!(v["user_agent"], "a\\xFF\"\\\t");
    assert_eq!(v["duration"], 0.128109);
    assert!(
        v["time"]
            .as_str()
            .unwrap()
            .starts_with(&local("%Y-%m-%dT%H:%M:%S"))
    );
}

#[test]
fn format_errors_name_the_column() {
    let e = Format::parse("{status} {nope}").unwrap_err();
    assert_eq!(e.column, 10);
    assert!(e.message.starts_with("unknown variable `nope`"), "{e:?}");
    let e = Format::parse("[{completion_date:%Y-%Q}]").unwrap_err();
    assert_eq!(e.column, 2);
    assert!(e.message.contains("invalid date pattern"), "{e:?}");
    let e = Format::parse("{status").unwrap_err();
    assert!(e.message.contains("unclosed"), "{e:?}");
    let e = Format::parse("{request_header}").unwrap_err();
    assert!(e.message.contains("needs a header name"), "{e:?}");
    let e = Format::parse("{status:x}").unwrap_err();
    assert!(e.message.contains("takes no argument"), "{e:?}");
    let e = Format::parse("{completion_date:{%Y}").unwrap_err();
    assert!(e.message.contains("unclosed"), "{e:?}");
}

#[test]
fn sites_log_lines() {
    let mut out = Vec::new();
    sites_line(&mut out, at(), "Upstream started PID: 12345\r\nforged");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "[{}] Upstream started PID: 12345\\x0D\\x0Aforged\n",
            local(SITES_DATE)
        )
    );
}

#[test]
fn response_fields_a_format_shows() {
    let names = |spec: &str| -> Vec<String> {
        Format::parse(spec)
            .unwrap()
            .response_fields()
            .iter()
            .map(|n| n.as_str().to_string())
            .collect()
    };
    assert_eq!(
        names("{status} {response_header:Age} {response_header:x-a} {response_header:age}"),
        ["age", "x-a"]
    );
    assert!(names("{status} {request_header:age}").is_empty());
    for built_in in ["standard", "advanced", "json"] {
        assert!(names(built_in).is_empty(), "{built_in}");
    }
}
