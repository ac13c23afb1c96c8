//! The WAF through the real binary, with the real CRS 3.3.4 rules and
//! libmodsecurity: what each profile blocks, exclusions, detect mode, the
//! body limit, reload, the block's sites-log and event-log lines, bad
//! configuration.

mod common;
use common::*;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SQLI: &str = "/?id=1%20OR%201=1";

/// Account t, one site per profile (off, basic, strong, full, wp, drupal),
/// one with exclusions, one in detect mode; the event log in the temp dir,
/// a 4 KiB body limit, loopback a trusted proxy.
fn config(up: &str) -> Conf {
    Conf::new()
        .set("trusted_proxies", r#"["127.0.0.1/32", "::1/128"]"#)
        .waf("event_log", "\"{dir}/waf-events.jsonl\"")
        .waf("body_limit", "4KiB")
        .account("t")
        .site("off", |s| s.address("off.test").upstream(up))
        .site("basic", |s| {
            s.address("basic.test").upstream(up).waf("profile: basic")
        })
        .site("strong", |s| {
            s.address("strong.test").upstream(up).waf("profile: strong")
        })
        .site("full", |s| {
            s.address("full.test").upstream(up).waf("profile: full")
        })
        .site("wp", |s| {
            s.address("wp.test").upstream(up).waf("profile: wordpress")
        })
        .site("drupal", |s| {
            s.address("drupal.test").upstream(up).waf("profile: drupal")
        })
        .site("excl", |s| {
            s.address("excl.test").upstream(up).waf(
                "profile: strong, \
                 exclude_rules: [941100, 941110, 941160], \
                 exclude_paths: [\"/api/*\", \"/static/app?.js\", \"/exact/\"], \
                 exclude_ips: [\"203.0.113.0/24\", \"2001:db8::/32\"]",
            )
        })
        .site("detect", |s| {
            s.address("detect.test")
                .upstream(up)
                .waf("profile: strong, mode: detect")
        })
}

/// One raw HTTP/1.1 request (Connection: close); status and whole response.
async fn raw(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn req(method: &str, host: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

async fn get_status(port: u16, host: &str, target: &str, headers: &[&str]) -> u16 {
    raw(port, &req("GET", host, target, headers, b"")).await.0
}

async fn post_status(port: u16, host: &str, target: &str, body: &str) -> u16 {
    let ct = "Content-Type: application/x-www-form-urlencoded";
    raw(port, &req("POST", host, target, &[ct], body.as_bytes()))
        .await
        .0
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Event-log lines for one request id (polls: the log is written async).
async fn events_for(ew: &Edgeward, request_id: &str) -> Vec<serde_json::Value> {
    let path = ew.dir.path().join("waf-events.jsonl");
    eventually(DEADLINE, &format!("event for {request_id}"), || async {
        let found: Vec<serde_json::Value> = read_lines(&path)
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("event lines are JSON"))
            .filter(|v| v["request_id"] == request_id)
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .await
}

#[tokio::test]
async fn each_profile_blocks_what_it_should_and_nothing_more() {
    let up = Upstream::start("app", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&up.address())).await;
    let p = ew.port;

    // A plain request passes every profile.
    for host in [
        "off.test",
        "basic.test",
        "strong.test",
        "full.test",
        "wp.test",
    ] {
        assert_eq!(
            get_status(p, host, "/index.html?page=2", &[]).await,
            200,
            "{host}"
        );
    }

    // SQL injection: passes basic, blocked from strong on.
    assert_eq!(get_status(p, "off.test", SQLI, &[]).await, 200);
    assert_eq!(get_status(p, "basic.test", SQLI, &[]).await, 200);
    for host in ["strong.test", "full.test", "wp.test", "drupal.test"] {
        assert_eq!(get_status(p, host, SQLI, &[]).await, 403, "{host}");
    }

    // Path traversal to a system file: passes strong, blocked by full (in
    // a query argument, strong's RCE rule 932160 already knows etc/passwd).
    for traversal in ["/static/../../etc/passwd", "/a/..%2f..%2fetc%2fpasswd"] {
        assert_eq!(get_status(p, "basic.test", traversal, &[]).await, 200);
        assert_eq!(get_status(p, "strong.test", traversal, &[]).await, 200);
        assert_eq!(get_status(p, "full.test", traversal, &[]).await, 403);
        assert_eq!(get_status(p, "wp.test", traversal, &[]).await, 403);
    }

    // PHP injection: only from full on.
    let php = "/?x=%3C%3Fphp%20system(%24_GET%5Bc%5D)%3B%20%3F%3E";
    assert_eq!(get_status(p, "full.test", php, &[]).await, 403);

    // A scanner's User-Agent: blocked by basic already.
    let nikto = ["User-Agent: Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)"];
    assert_eq!(get_status(p, "off.test", "/", &nikto).await, 200);
    assert_eq!(get_status(p, "basic.test", "/", &nikto).await, 403);

    // WordPress saving a post with HTML (and script) content: blocked by
    // full, passes wordpress (the CRS WordPress exclusions).
    let save = "action=editpost&post_ID=12&post_title=Hello&content=%3Cp%3EHello%20%3Ca%20href%3D%22https%3A%2F%2Fexample.org%2F%22%3Eworld%3C%2Fa%3E%3C%2Fp%3E%3Cscript%3Econsole.log(1)%3C%2Fscript%3E";
    assert_eq!(
        post_status(p, "full.test", "/wp-admin/post.php", save).await,
        403
    );
    assert_eq!(
        post_status(p, "wp.test", "/wp-admin/post.php", save).await,
        200
    );
    // ... but only there: the same content elsewhere is still an attack.
    assert_eq!(post_status(p, "wp.test", "/contact.php", save).await, 403);

    // edgeward's own WordPress rules: XML-RPC and user enumeration.
    for (target, wp, full) in [
        ("/xmlrpc.php", 403, 200),
        ("/blog/XMLRPC.php", 403, 200),
        ("/?author=1", 403, 200),
        ("/?author=admin", 200, 200),
        ("/wp-admin/edit.php?author=1", 200, 200),
        ("/wp-json/wp/v2/users", 403, 200),
        ("/wp-json/wp/v2/posts", 200, 200),
    ] {
        assert_eq!(
            get_status(p, "wp.test", target, &[]).await,
            wp,
            "wordpress {target}"
        );
        assert_eq!(
            get_status(p, "full.test", target, &[]).await,
            full,
            "full {target}"
        );
    }
    let logged_in = ["Cookie: wordpress_logged_in_0123abcd=admin%7C1700000000%7Cx"];
    assert_eq!(
        get_status(p, "wp.test", "/wp-json/wp/v2/users", &logged_in).await,
        200
    );

    // HTTP/2 requests are inspected the same way.
    assert_eq!(get_h2c(p, "strong.test", SQLI).await.unwrap().status, 403);
    assert_eq!(get_h2c(p, "strong.test", "/ok").await.unwrap().status, 200);

    let metrics = ew.metrics().await;
    assert!(
        metrics.contains("edgeward_waf_requests_total{profile=\"strong\",result=\"blocked\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("edgeward_waf_engine_seconds_bucket"));
}

#[tokio::test]
async fn a_block_is_a_403_page_a_sites_log_line_per_rule_and_an_event() {
    let up = Upstream::start("app", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&up.address())).await;
    let hits = up.hits.load(std::sync::atomic::Ordering::SeqCst);

    let id = "wafblock-0001";
    let (status, page) = raw(
        ew.port,
        &req(
            "GET",
            "strong.test",
            SQLI,
            &[&format!("X-Request-Id: {id}")],
            b"",
        ),
    )
    .await;
    assert_eq!(status, 403);
    assert!(page.contains(id), "the page shows the request id: {page}");
    assert!(page.contains("web application firewall"), "{page}");
    assert_eq!(
        up.hits.load(std::sync::atomic::Ordering::SeqCst),
        hits,
        "a blocked request never reaches the upstream"
    );

    let sites_log = ew.dir.path().join("t/sites/strong.log");
    let line = eventually(DEADLINE, "the sites-log line", || async {
        read_lines(&sites_log)
            .into_iter()
            .find(|l| l.contains("[waf]"))
    })
    .await;
    // [date] [waf] - IP "REQUEST LINE" - RULEID | message' with value: ...
    let (date, rest) = line.split_once("] ").unwrap();
    assert!(date.starts_with('[') && date.len() == 27, "{line}");
    assert_eq!(
        rest,
        "[waf] - 127.0.0.1 \"GET /?id=1%20OR%201=1 HTTP/1.1\" - 942100 | SQL Injection Attack Detected via libinjection' with value: 1 OR 1=1"
    );

    let ev = &events_for(&ew, id).await[0];
    assert_eq!(ev["site"], "t/strong");
    assert_eq!(ev["client_ip"], "127.0.0.1");
    assert_eq!(ev["method"], "GET");
    assert_eq!(ev["uri"], SQLI);
    assert_eq!(ev["action"], "blocked");
    assert_eq!(ev["anomaly_score"], 5);
    let ids: Vec<u64> = ev["rule_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![942100, 949110]);
    assert!(
        ev["messages"][0]
            .as_str()
            .unwrap()
            .contains("SQL Injection")
    );

    // Client data cannot forge sites-log lines: a newline in the matched
    // value is escaped.
    let forged = "/?q=%3Cscript%3Ealert(1)%3C/script%3E%0a[21/Nov/2026:00:00:00%20+0000]%20forged";
    assert_eq!(get_status(ew.port, "strong.test", forged, &[]).await, 403);
    eventually(DEADLINE, "the second block's line", || async {
        let lines = read_lines(&sites_log);
        lines
            .iter()
            .any(|l| l.to_ascii_lowercase().contains("\\x0a[21/nov/2026"))
            .then_some(())
    })
    .await;
    assert!(
        read_lines(&sites_log)
            .iter()
            .all(|l| l.starts_with('[') && !l.starts_with("[21/Nov/2026:00:00:00")),
        "no forged line"
    );
}

#[tokio::test]
async fn exclusions_by_rule_path_and_client_address() {
    let up = Upstream::start("app", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&up.address())).await;
    let p = ew.port;
    let xss = "/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    // The XSS rules that fire at PL1 are excluded by id: XSS passes, SQLi not.
    assert_eq!(get_status(p, "strong.test", xss, &[]).await, 403);
    assert_eq!(get_status(p, "excl.test", xss, &[]).await, 200);
    assert_eq!(get_status(p, "excl.test", SQLI, &[]).await, 403);

    // Paths: globs on the path, never the query string.
    let sqli_query = "?id=1%20OR%201=1";
    for ok in ["/api/users", "/api/a/b/c", "/static/app1.js", "/exact/"] {
        let t = format!("{ok}{sqli_query}");
        assert_eq!(get_status(p, "excl.test", &t, &[]).await, 200, "{t}");
    }
    for blocked in [
        "/api",
        "/apix/users",
        "/static/app12.js",
        "/exact/more",
        "/other/",
        // Dot segments and escapes cannot borrow an excluded path.
        "/api/../admin",
        "/api/%2e%2e/admin",
        "/?x=/api/",
    ] {
        let t = if blocked.contains('?') {
            format!("{blocked}&id=1%20OR%201=1")
        } else {
            format!("{blocked}{sqli_query}")
        };
        assert_eq!(get_status(p, "excl.test", &t, &[]).await, 403, "{t}");
    }
    // `/api/%61dmin` is still under /api/ once decoded: excluded.
    let t = format!("/%61pi/x{sqli_query}");
    assert_eq!(get_status(p, "excl.test", &t, &[]).await, 200, "{t}");

    // Client addresses (v4 and v6 CIDRs), on the client IP as logged (here
    // from X-Forwarded-For, the peer being a trusted proxy).
    for (xff, want) in [
        ("203.0.113.7", 200),
        ("203.0.114.7", 403),
        ("2001:db8::42", 200),
        ("2001:db9::42", 403),
    ] {
        let h = format!("X-Forwarded-For: {xff}");
        assert_eq!(get_status(p, "excl.test", SQLI, &[&h]).await, want, "{xff}");
    }
}

#[tokio::test]
async fn detect_mode_logs_and_passes() {
    let up = Upstream::start("app", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&up.address())).await;
    let id = "detect-0001";
    let (status, body) = raw(
        ew.port,
        &req(
            "GET",
            "detect.test",
            SQLI,
            &[&format!("X-Request-Id: {id}")],
            b"",
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("GET /?id=1%20OR%201=1"),
        "reached the upstream"
    );
    let ev = &events_for(&ew, id).await[0];
    assert_eq!(ev["action"], "detected");
    assert_eq!(ev["anomaly_score"], 5);
    assert!(
        ev["rule_ids"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(942100))
    );
    // The operator still sees which rule would have blocked.
    let sites_log = ew.dir.path().join("t/sites/detect.log");
    eventually(DEADLINE, "the detect-mode sites-log line", || async {
        read_lines(&sites_log)
            .iter()
            .any(|l| l.contains("942100 | SQL Injection"))
            .then_some(())
    })
    .await;
    // A request that matches nothing writes no event. Edgeward reads the
    // next request on a kept-alive connection only after the previous
    // one's logging phase (where the WAF reports what it has not reported
    // yet): an event of the clean request would be queued before that of
    // the attack sent after it on the same connection, for the same file,
    // whose lines keep their order.
    let mut conn = Connection::open(ew.port).await.unwrap();
    for (target, id) in [("/fine", "detect-quiet"), (SQLI, "detect-barrier")] {
        let r = conn
            .request("GET", Some("detect.test"), target, &[("x-request-id", id)])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{target}");
    }
    events_for(&ew, "detect-barrier").await;
    let events = std::fs::read_to_string(ew.dir.path().join("waf-events.jsonl")).unwrap();
    assert!(!events.contains("detect-quiet"), "{events}");
}

#[tokio::test]
async fn request_bodies_are_inspected_up_to_the_limit_then_streamed() {
    let up = Upstream::start("app", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&up.address())).await;
    let p = ew.port;
    let hits = || up.hits.load(std::sync::atomic::Ordering::SeqCst);

    // An attack in a small body: blocked, and no byte of it reaches the
    // upstream (its head may).
    let before = hits();
    let (status, _) = raw(
        p,
        &req(
            "POST",
            "strong.test",
            "/form",
            &["Content-Type: application/x-www-form-urlencoded"],
            b"name=x&id=1%20OR%201=1",
        ),
    )
    .await;
    assert_eq!(status, 403);
    let after = hits();
    assert!(
        after <= before + 1,
        "at most the headers reached the upstream"
    );
    // Did its body reach the upstream? A clean request next: edgeward opens
    // a new upstream connection for it (one it opened for the blocked
    // request cannot be reused without the body), accepted after that
    // one. Once all connections but the clean request's (kept for reuse)
    // are closed, everything sent on them has arrived. (A payload that
    // arrives sooner fails the test sooner.)
    let payloads = [&b"1%20OR%201=1"[..], b"name=x"];
    let arrived = |got: &[u8]| {
        payloads
            .iter()
            .any(|p| got.windows(p.len()).any(|w| w == *p))
    };
    assert_eq!(get_status(p, "strong.test", "/clean", &[]).await, 200);
    let got = eventually(
        DEADLINE,
        "the blocked request's upstream connection closed",
        || async {
            let got = up.received();
            (up.open_connections() <= 1 || arrived(&got)).then_some(got)
        },
    )
    .await;
    assert!(
        got.windows(11).any(|w| w == b"GET /clean "),
        "the clean request's bytes are recorded"
    );
    assert!(
        !arrived(&got),
        "the blocked body reached the upstream:\n{}",
        String::from_utf8_lossy(&got)
    );

    // A benign body larger than the limit (4 KiB) passes whole.
    let big = format!("a={}&b=end-of-body", "x".repeat(20_000));
    let (status, body) = raw(
        p,
        &req(
            "POST",
            "strong.test",
            "/upload",
            &["Content-Type: application/x-www-form-urlencoded"],
            big.as_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("received-body-bytes: {}", big.len())),
        "{body}"
    );
    assert!(body.contains("b=end-of-body"), "{body}");

    // Beyond the limit nothing is inspected (ProcessPartial).
    let tail_attack = format!("a={}&id=1%20OR%201=1", "x".repeat(8_000));
    assert_eq!(
        post_status(p, "strong.test", "/late", &tail_attack).await,
        200
    );
    // Within it, it is.
    let early_attack = format!("id=1%20OR%201=1&a={}", "x".repeat(8_000));
    assert_eq!(
        post_status(p, "strong.test", "/early", &early_attack).await,
        403
    );

    // Chunked bodies too.
    let mut chunked = b"POST /chunked HTTP/1.1\r\nHost: strong.test\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in ["id=1%20", "OR%201", "=1"] {
        chunked.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(p, &chunked).await.0, 403);
}

#[tokio::test]
async fn reload_switches_a_sites_profile_without_a_restart() {
    let up = Upstream::start("app", Behaviour::Echo).await;
    let base = config(&up.address());
    let ew = Edgeward::start(&base).await;
    let pid = ew.pid();
    assert_eq!(get_status(ew.port, "off.test", SQLI, &[]).await, 200);
    let switched = base.clone().edit_site("off", |s| s.waf("profile: strong"));
    ew.reload(&switched).await;
    assert_eq!(get_status(ew.port, "off.test", SQLI, &[]).await, 403);
    assert_eq!(get_status(ew.port, "off.test", "/fine", &[]).await, 200);
    // ... and back.
    ew.reload(&base).await;
    assert_eq!(get_status(ew.port, "off.test", SQLI, &[]).await, 200);
    assert_eq!(ew.pid(), pid);

    // A reload with a broken CRS path is refused; the old WAF stays.
    let broken = switched.waf("crs_dir", "/nonexistent/crs");
    ew.reload(&broken).await;
    assert!(ew.log().contains("waf.crs_dir"), "{}", ew.log());
    assert_eq!(get_status(ew.port, "strong.test", SQLI, &[]).await, 403);
    assert_eq!(get_status(ew.port, "off.test", SQLI, &[]).await, 200);
}

#[test]
fn check_refuses_a_broken_crs_path_and_profiles() {
    let cfg = |site_waf: &str| {
        Conf::new().account("a").site("s", |s| {
            s.address("s.test").upstream("127.0.0.1:2").waf(site_waf)
        })
    };
    let conf = cfg("profile: strong").waf("crs_dir", "/nonexistent/crs");
    let (code, out) = check_conf(&conf);
    assert_ne!(code, 0);
    let line = conf.line_of("crs_dir");
    assert!(
        out.contains(&format!(":{line}:")) && out.contains("waf.crs_dir"),
        "line {line}: {out}"
    );
    assert!(out.contains("/nonexistent/crs/rules"), "{out}");

    let (code, out) = check_conf(&cfg("profile: paranoid"));
    assert_ne!(code, 0);
    assert!(out.contains("unknown profile \"paranoid\""), "{out}");
    assert!(
        out.contains("basic, disabled, drupal, full, strong, wordpress"),
        "{out}"
    );

    let (code, out) = check_conf(&cfg("profile: strong, paranoia_level: 7, mode: audit"));
    assert_ne!(code, 0);
    assert!(out.contains("waf.paranoia_level"), "{out}");
    assert!(out.contains("waf.mode"), "{out}");

    let (code, out) = check_conf(&cfg("profile: strong, exclude_ips: [\"10.0.0.300/8\"]"));
    assert_ne!(code, 0);
    assert!(out.contains("waf.exclude_ips"), "{out}");

    // A profile whose rules do not compile: libmodsecurity's message.
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    std::fs::write(
        dir.path().join("broken.yaml"),
        "rules: [REQUEST-901-INITIALIZATION.conf]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("modsecurity.conf"),
        "SecRuleEngine On\nSecNoSuchDirective 1\n",
    )
    .unwrap();
    let profiles_dir = quote(&dir.path().display().to_string());
    let (code, out) = check_conf(&cfg("profile: broken").waf("profiles_dir", &profiles_dir));
    assert_ne!(code, 0);
    assert!(out.contains("waf.profile broken"), "{out}");
    // A profile naming a CRS file that does not exist.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/modsecurity.conf"),
        dir.path().join("modsecurity.conf"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "rules: [REQUEST-999-NOPE.conf]\n",
    )
    .unwrap();
    let (code, out) = check_conf(&cfg("profile: broken").waf("profiles_dir", &profiles_dir));
    assert_ne!(code, 0);
    assert!(out.contains("REQUEST-999-NOPE.conf not found"), "{out}");
    // The same directory with a good profile is accepted.
    let (code, out) = check_conf(
        &cfg("profile: full, paranoia_level: 2, anomaly_threshold: 10")
            .waf("profiles_dir", &profiles_dir),
    );
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn raw_attack_bytes_reach_the_waf_and_malformed_requests_do_not_pass() {
    let up = Upstream::start("app", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&up.address())).await;
    let p = ew.port;
    // Raw `<`, `>` and `"` in the target (as attack tools send them): not
    // refused by the front end, inspected by the WAF...
    let target = "/?x=<script>alert(\"1\")</script>";
    let (status, _) = raw(p, &req("GET", "strong.test", target, &[], b"")).await;
    assert_eq!(status, 403);
    // ... and sent upstream byte for byte where no WAF runs (to a bare TCP
    // upstream: HTTP libraries refuse such targets themselves).
    let lax = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lax_addr = lax.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = lax.accept().await {
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                let line = head
                    .split(|&b| b == b'\r')
                    .next()
                    .unwrap_or_default()
                    .to_vec();
                let mut resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    line.len()
                )
                .into_bytes();
                resp.extend_from_slice(&line);
                let _ = s.write_all(&resp).await;
            });
        }
    });
    let ew2 = Edgeward::start(&Conf::new().no_admin().account("t").site("lax", |s| {
        s.address("lax.test").upstream(&lax_addr.to_string())
    }))
    .await;
    let (status, body) = raw(ew2.port, &req("GET", "lax.test", target, &[], b"")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.ends_with(&format!("GET {target} HTTP/1.1")), "{body}");

    // What no origin server should see: 400 from edgeward (as nginx does).
    for bad in [
        b"GET \\ HTTP/1.1\r\nHost: off.test\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET index.html HTTP/1.1\r\nHost: off.test\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: off.test\r\nHost: strong.test\r\nConnection: close\r\n\r\n"
            .to_vec(),
    ] {
        let (status, _) = raw(p, &bad).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&bad));
    }
    // Still fine: absolute-form, OPTIONS *, HTTP/1.0 without Host (default
    // site absent: 404, not 400).
    let abs = b"GET http://off.test/abs HTTP/1.1\r\nHost: off.test\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(p, abs).await.0, 200);
    let old = b"GET / HTTP/1.0\r\nUser-Agent: test\r\n\r\n";
    assert_eq!(raw(p, old).await.0, 404);
}
