//! HTTPS through the real binary: real handshakes (OpenSSL as the client,
//! curl for HTTP/1.1 and HTTP/2 over TLS), certificates made by the tests in
//! temp dirs, real upstream servers.

mod common;
use common::*;
use openssl::ssl::SslVersion;
use std::time::Duration;

/// Certificates in a temp dir: `blog` for blog.test, `star` for
/// *.shop.test, `default` for default.test.
struct Certs {
    dir: tempfile::TempDir,
    blog: TestCert,
    star: TestCert,
    default: TestCert,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let blog = TestCert::new(dir.path(), "blog", "blog cert", &["blog.test"]);
    let star = TestCert::new(dir.path(), "star", "shop wildcard", &["*.shop.test"]);
    let default = TestCert::new(dir.path(), "default", "default cert", &["default.test"]);
    Certs {
        dir,
        blog,
        star,
        default,
    }
}

/// blog.test (own certificate, redirect and HSTS), *.shop.test (wildcard
/// certificate), plain.test (no certificate); HTTPS on `{tls}`.
fn conf(c: &Certs, upstream: &str, default: bool) -> Conf {
    let mut conf = Conf::new().set_in("tls", "listen", "[\"{tls}\"]");
    if default {
        conf = conf.set_in("tls", "default_certificate", &c.default.flow());
    }
    conf.site("blog", |s| {
        s.address("blog.test")
            .upstream(upstream)
            .set("tls", &c.blog.flow())
            .set("https_redirect", "true")
            .set("hsts", "365d")
            .waf("profile: strong")
            .cache("enabled: true")
    })
    .site("shop", |s| {
        s.address("*.shop.test")
            .upstream(upstream)
            .set("tls", &c.star.flow())
    })
    .site("plain", |s| s.address("plain.test").upstream(upstream))
}

// Handshakes block: the upstreams need a worker of their own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_chosen_by_sni() {
    let c = certs();
    let up = Upstream::start("up", Behaviour::Echo).await;
    let ew = Edgeward::start(&conf(&c, &up.address(), true)).await;
    let cn = |sni: Option<&str>| handshake(ew.tls_port, sni, None, &[]).map(|h| h.cn);
    assert_eq!(cn(Some("blog.test")).unwrap(), "blog cert");
    assert_eq!(cn(Some("BLOG.test.")).unwrap(), "blog cert");
    assert_eq!(cn(Some("a.shop.test")).unwrap(), "shop wildcard");
    // One label only, as certificates match.
    assert_eq!(cn(Some("a.b.shop.test")).unwrap(), "default cert");
    // Another tenant's name without a certificate of its own, an unknown
    // name, no SNI: the default certificate.
    assert_eq!(cn(Some("plain.test")).unwrap(), "default cert");
    assert_eq!(cn(Some("nobody.test")).unwrap(), "default cert");
    assert_eq!(cn(None).unwrap(), "default cert");
}

// Handshakes block: the upstreams need a worker of their own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_default_an_unknown_name_fails_the_handshake() {
    let c = certs();
    let up = Upstream::start("up", Behaviour::Echo).await;
    let ew = Edgeward::start(&conf(&c, &up.address(), false)).await;
    let e = handshake(ew.tls_port, Some("nobody.test"), None, &[]).unwrap_err();
    assert!(e.contains("unrecognized name"), "{e}");
    let e = handshake(ew.tls_port, Some("plain.test"), None, &[]).unwrap_err();
    assert!(e.contains("unrecognized name"), "{e}");
    let e = handshake(ew.tls_port, None, None, &[]).unwrap_err();
    assert!(e.contains("unrecognized name"), "{e}");
    let m = ew.metrics().await;
    assert!(
        m.contains("edgeward_tls_handshake_failures_total{reason=\"unknown_name\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("edgeward_tls_handshake_failures_total{reason=\"no_server_name\"} 1"),
        "{m}"
    );
    // The site names still work.
    assert_eq!(
        handshake(ew.tls_port, Some("blog.test"), None, &[])
            .unwrap()
            .cn,
        "blog cert"
    );
}

// Handshakes block: the upstreams need a worker of their own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_only_alpn_h2() {
    let c = certs();
    let up = Upstream::start("up", Behaviour::Echo).await;
    let ew = Edgeward::start(&conf(&c, &up.address(), true)).await;
    for old in [SslVersion::TLS1, SslVersion::TLS1_1] {
        let r = handshake(ew.tls_port, Some("blog.test"), Some(old), &[]);
        assert!(r.is_err(), "{old:?} accepted: {r:?}");
    }
    let h = handshake(
        ew.tls_port,
        Some("blog.test"),
        Some(SslVersion::TLS1_2),
        &[],
    )
    .unwrap();
    assert_eq!(h.version, "TLSv1.2");
    let h = handshake(ew.tls_port, Some("blog.test"), None, &["h2", "http/1.1"]).unwrap();
    assert_eq!(
        (h.version.as_str(), h.alpn.as_deref()),
        ("TLSv1.3", Some("h2"))
    );
    let h = handshake(ew.tls_port, Some("blog.test"), None, &["http/1.1"]).unwrap();
    assert_eq!(h.alpn.as_deref(), Some("http/1.1"));
    // The two refusals are counted under the alert edgeward sent.
    let m = ew.metrics().await;
    assert!(
        m.contains("edgeward_tls_handshake_failures_total{reason=\"protocol_version\"} 2"),
        "{m}"
    );
}

// Handshakes block: the upstreams need a worker of their own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_are_counted_by_reason() {
    let c = certs();
    let up = Upstream::start("up", Behaviour::Echo).await;
    let ew = Edgeward::start(&conf(&c, &up.address(), true)).await;
    let failures = |m: &str, reason: &str| -> u64 {
        let key = format!("edgeward_tls_handshake_failures_total{{reason=\"{reason}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let e = distrusting_handshake(ew.tls_port, "blog.test").unwrap_err();
    assert!(e.contains("certificate verify failed"), "{e}");
    eventually(
        Duration::from_secs(5),
        "the client's alert counted",
        || async { (failures(&ew.metrics().await, "client_unknown_ca") == 1).then_some(()) },
    )
    .await;
    hello_and_hang_up(ew.tls_port, "blog.test");
    hello_and_hang_up(ew.tls_port, "nobody.test");
    eventually(Duration::from_secs(5), "hang-ups counted", || async {
        (failures(&ew.metrics().await, "client_closed") == 2).then_some(())
    })
    .await;
    // Finished handshakes are not failures, whatever happens after.
    for _ in 0..3 {
        handshake(ew.tls_port, Some("blog.test"), None, &[]).unwrap();
    }
    let mut s = tls_connect(ew.tls_port, "a.shop.test").unwrap();
    https_raw(
        &mut s,
        "GET / HTTP/1.1\r\nHost: a.shop.test\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let m = ew.metrics().await;
    let total: u64 = m
        .lines()
        .filter(|l| l.starts_with("edgeward_tls_handshake_failures_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 3, "{m}");
}

// Handshakes block: the upstreams need a worker of their own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_with_edgeward_ticket_keys() {
    let c = certs();
    let up = Upstream::start("up", Behaviour::Echo).await;
    let ew = Edgeward::start(&conf(&c, &up.address(), true)).await;
    for max in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
        let port = ew.tls_port;
        let (fresh, first) =
            tokio::task::spawn_blocking(move || resume(port, "blog.test", max, None).unwrap())
                .await
                .unwrap();
        assert!(!fresh, "{max:?}: nothing to resume yet");
        let ticket = first.expect("a session ticket");
        let (reused, _) = tokio::task::spawn_blocking(move || {
            resume(port, "blog.test", max, Some(&ticket)).unwrap()
        })
        .await
        .unwrap();
        assert!(reused, "{max:?}: the ticket was not accepted");
    }
    // A ticket of another server (its own keys) means a full handshake.
    let other = Edgeward::start(&conf(&c, &up.address(), true)).await;
    let port = other.tls_port;
    let (_, foreign) = tokio::task::spawn_blocking(move || {
        resume(port, "blog.test", SslVersion::TLS1_3, None).unwrap()
    })
    .await
    .unwrap();
    let foreign = foreign.expect("a session ticket");
    let port = ew.tls_port;
    let (reused, _) = tokio::task::spawn_blocking(move || {
        resume(port, "blog.test", SslVersion::TLS1_3, Some(&foreign)).unwrap()
    })
    .await
    .unwrap();
    assert!(!reused, "a ticket under another server's key was accepted");
}

// Handshakes block: the upstreams need a worker of their own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_https_h1_and_h2() {
    let c = certs();
    let up = Upstream::start("up", Behaviour::Echo).await;
    let ew = Edgeward::start(&conf(&c, &up.address(), true).edit_site("blog", |s| {
        s.access_log(r#"format: "{protocol} {ssl_version} {request}""#)
    }))
    .await;
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let r = curl(ew.tls_port, "blog.test", "/x?y=1", &c.blog.cert, &[flag])
            .await
            .unwrap();
        assert_eq!((r.status, r.http_version.as_str()), (200, version), "{r:?}");
        assert!(r.body.contains("x-forwarded-proto: https"), "{}", r.body);
        assert_eq!(r.body.lines().nth(1), Some("GET /x?y=1"), "{}", r.body);
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{r:?}"
        );
        assert!(r.header("x-request-id").is_some());
    }
    // The wildcard site over h2.
    let r = curl(ew.tls_port, "a.shop.test", "/", &c.star.cert, &["--http2"])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("x-forwarded-proto: https"), "{}", r.body);
    assert_eq!(r.header("strict-transport-security"), None);
    let log = ew.dir.path().join("alice/http/blog.log");
    let text = eventually(DEADLINE, "two access-log lines", || {
        let log = log.clone();
        async move {
            let t = std::fs::read_to_string(&log).unwrap_or_default();
            (t.lines().count() >= 2).then_some(t)
        }
    })
    .await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "https TLSv1.3 GET /x?y=1 HTTP/1.1", "{text}");
    assert_eq!(lines[1], "https TLSv1.3 GET /x?y=1 HTTP/2.0", "{text}");
}

// Handshakes block: the upstreams need a worker of their own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_and_gets_no_hsts() {
    let c = certs();
    let up = Upstream::start("up", Behaviour::Echo).await;
    let ew = Edgeward::start(&conf(&c, &up.address(), true)).await;
    let r = get(ew.port, "blog.test", "/a/b?c=d").await.unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://blog.test:{}/a/b?c=d", ew.tls_port).as_str())
    );
    assert_eq!(r.header("strict-transport-security"), None);
    let r = request(ew.port, "POST", Some("blog.test"), "/form", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // A site without https_redirect is served over plain HTTP.
    let r = get(ew.port, "plain.test", "/").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("x-forwarded-proto: http\n"), "{}", r.body);
}

// Handshakes block: the upstreams need a worker of their own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waf_and_cache_over_https() {
    let c = certs();
    let origin = Origin::start().await;
    origin.set(
        "/page",
        200,
        &[
            ("cache-control", "max-age=300"),
            ("content-type", "text/plain"),
        ],
    );
    let ew = Edgeward::start(
        &conf(&c, &origin.address(), true)
            .edit_site("blog", |s| s.set("https_redirect", "false"))
            .waf("event_log", "\"{dir}/waf-events.jsonl\""),
    )
    .await;
    let r = curl(
        ew.tls_port,
        "blog.test",
        "/?id=1%20OR%201=1",
        &c.blog.cert,
        &[],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    // The WAF's event says the request came over HTTPS.
    let events = ew.dir.path().join("waf-events.jsonl");
    let line = eventually(Duration::from_secs(5), "the WAF event", || async {
        std::fs::read_to_string(&events)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await;
    assert!(line.contains("\"scheme\":\"https\""), "{line}");
    assert!(line.contains("\"action\":\"blocked\""), "{line}");
    // https and http are stored apart: each scheme misses once.
    for _ in 0..2 {
        let r = curl(ew.tls_port, "blog.test", "/page", &c.blog.cert, &[])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(origin.hits("/page"), 1);
    let r = get(ew.port, "blog.test", "/page").await.unwrap();
    assert_eq!(r.header("cache-status"), Some("edgeward; fwd=miss; stored"));
    assert_eq!(origin.hits("/page"), 2);
    let r = get(ew.port, "blog.test", "/page").await.unwrap();
    assert_eq!(r.header("cache-status"), Some("edgeward; hit"));
    // One PURGE of the URL removes both.
    let r = request(ew.port, "PURGE", Some("blog.test"), "/page", &[])
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "2 entries purged\n"));
    let r = curl(ew.tls_port, "blog.test", "/page", &c.blog.cert, &[])
        .await
        .unwrap();
    assert_eq!(r.header("cache-status"), Some("edgeward; fwd=miss; stored"));
    assert_eq!(origin.hits("/page"), 3);
}

// Handshakes block: the upstreams need a worker of their own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_certificates_without_dropping_connections() {
    let c = certs();
    let up = Upstream::start("up", Behaviour::Echo).await;
    let ew = Edgeward::start(&conf(&c, &up.address(), true)).await;
    assert_eq!(
        handshake(ew.tls_port, Some("blog.test"), None, &[])
            .unwrap()
            .cn,
        "blog cert"
    );
    // A connection opened (handshake done) before the reload.
    let port = ew.tls_port;
    let mut before = tokio::task::spawn_blocking(move || tls_connect(port, "blog.test"))
        .await
        .unwrap()
        .unwrap();
    // Same files, new certificate.
    TestCert::new(c.dir.path(), "blog", "blog cert renewed", &["blog.test"]);
    ew.signal("HUP");
    eventually(DEADLINE, "the renewed certificate", || async {
        handshake(ew.tls_port, Some("blog.test"), None, &[])
            .ok()
            .filter(|h| h.cn == "blog cert renewed")
    })
    .await;
    // The old connection still serves, on its old certificate.
    let answer = tokio::task::spawn_blocking(move || {
        let cn = peer_cn(&before);
        let answer = https_raw(
            &mut before,
            "GET /one HTTP/1.1\r\nHost: blog.test\r\nConnection: close\r\n\r\n",
        );
        (cn, answer)
    })
    .await
    .unwrap();
    assert_eq!(answer.0, "blog cert");
    let text = answer.1.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let r = curl(ew.tls_port, "blog.test", "/", &c.blog.cert, &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

fn check_tls(conf: &Conf) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    check(
        &conf
            .render("127.0.0.1:8080", "127.0.0.1:9180", dir.path())
            .replace("{tls}", "127.0.0.1:8443"),
    )
}

#[test]
fn check_refuses_unusable_certificates() {
    let c = certs();
    let base = |tls: &str| {
        Conf::new()
            .set_in("tls", "listen", "[\"{tls}\"]")
            .site("blog", |s| {
                s.address("blog.test")
                    .upstream("127.0.0.1:9")
                    .set("tls", tls)
            })
    };
    let (code, out) = check_tls(&base(&c.blog.flow()));
    assert_eq!(code, 0, "{out}");
    // Unreadable.
    let missing = c.dir.path().join("missing.pem");
    let (code, out) = check_tls(&base(&format!(
        "{{ certificate: {}, key: {} }}",
        quote(&missing.display().to_string()),
        quote(&c.blog.key.display().to_string())
    )));
    assert_eq!(code, 1);
    assert!(out.contains("site alice/blog: tls: cannot read"), "{out}");
    assert!(out.contains("missing.pem"), "{out}");
    // The key of another certificate.
    let (code, out) = check_tls(&base(&format!(
        "{{ certificate: {}, key: {} }}",
        quote(&c.blog.cert.display().to_string()),
        quote(&c.star.key.display().to_string())
    )));
    assert_eq!(code, 1);
    assert!(out.contains("does not match the certificate"), "{out}");
    // Expired yesterday.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let old = TestCert::valid(
        c.dir.path(),
        "old",
        "old",
        &["blog.test"],
        now - 10 * 86_400,
        now - 86_400,
    );
    let (code, out) = check_tls(&base(&old.flow()));
    assert_eq!(code, 1);
    assert!(out.contains("expired on"), "{out}");
    // A certificate for other names: valid, with a warning.
    let (code, out) = check_tls(&base(&c.star.flow()));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("covers none of the site's addresses"), "{out}");
    // A certificate without an HTTPS listener.
    let (code, out) = check(
        &Conf::new()
            .site("blog", |s| {
                s.address("blog.test")
                    .upstream("127.0.0.1:9")
                    .set("tls", &c.blog.flow())
            })
            .render("127.0.0.1:8080", "127.0.0.1:9180", c.dir.path()),
    );
    assert_eq!(code, 1);
    assert!(out.contains("no HTTPS listener"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_certificates_work_too() {
    let c = certs();
    let rsa = TestCert::rsa(c.dir.path(), "rsa", "rsa cert", &["rsa.test"]);
    let up = Upstream::start("up", Behaviour::Echo).await;
    let ew = Edgeward::start(&conf(&c, &up.address(), true).site("rsa", |s| {
        s.address("rsa.test")
            .upstream(&up.address())
            .set("tls", &rsa.flow())
    }))
    .await;
    for max in [Some(SslVersion::TLS1_2), None] {
        let h = handshake(ew.tls_port, Some("rsa.test"), max, &[]).unwrap();
        assert_eq!(h.cn, "rsa cert");
    }
    let r = curl(ew.tls_port, "rsa.test", "/", &rsa.cert, &["--http2"])
        .await
        .unwrap();
    assert_eq!((r.status, r.http_version.as_str()), (200, "2"));
}

/// 200 HTTPS requests while 10 reloads swap the certificate back and forth:
/// half are held at the upstream for the whole storm (their connections and
/// configuration predate it), half start between reloads. Every one is
/// answered 200 by the upstream, on a handshake that presented one of the
/// two certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_requests_during_certificate_reloads() {
    use std::sync::atomic::Ordering;
    let c = certs();
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let up = Upstream::start("up", Behaviour::Gated(gate)).await;
    let conf =
        conf(&c, &up.address(), true).edit_site("blog", |s| s.set("https_redirect", "false"));
    let ew = Edgeward::start(&conf).await;
    let port = ew.tls_port;
    let spawn = |path: String| {
        tokio::task::spawn_blocking(move || {
            let mut s = tls_connect(port, "blog.test")?;
            let cn = peer_cn(&s);
            let text = https_raw(
                &mut s,
                &format!("GET {path} HTTP/1.1\r\nHost: blog.test\r\nConnection: close\r\n\r\n"),
            )?;
            Ok::<_, String>((path, cn, text))
        })
    };
    let mut requests: Vec<_> = (0..100).map(|i| spawn(format!("/hold/{i}"))).collect();
    eventually(DEADLINE, "100 held requests at the upstream", || async {
        (up.hits.load(Ordering::SeqCst) == 100).then_some(())
    })
    .await;
    for n in 0..10 {
        let cn = if n % 2 == 0 {
            "blog cert B"
        } else {
            "blog cert"
        };
        TestCert::new(c.dir.path(), "blog", cn, &["blog.test"]);
        let log = ew.reload(&conf).await;
        assert!(!log.contains("reload failed"), "{log}");
        requests.extend((0..10).map(|i| spawn(format!("/now/{n}/{i}"))));
    }
    open_gate.send(true).unwrap();
    let mut failures = Vec::new();
    for r in requests {
        match r.await.unwrap() {
            Ok((path, cn, text))
                if text.starts_with("HTTP/1.1 200")
                    && text.contains(&format!("GET {path}\n"))
                    && (cn == "blog cert" || cn == "blog cert B") => {}
            Ok((path, cn, text)) => failures.push(format!("{path} ({cn}): {text}")),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}
