//! Automatic certificates against a real ACME CA (Pebble, with
//! pebble-challtestsrv as its DNS), loopback only, ephemeral ports: the
//! real binary answers the CA's HTTP-01 challenge on its plain listener and
//! serves the certificate by SNI, without a reload.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An order takes a few seconds against Pebble; a test waits this long.
const ORDER: Duration = Duration::from_secs(40);

/// Site `blog` (blog.test, ACME, https_redirect) and `shop` (shop.test,
/// ACME) in account alice; HTTPS on `{tls}`; storage `storage` (a flow).
fn conf(pebble: &Pebble, upstream: &str, storage: &str) -> Conf {
    Conf::new()
        .set_in("tls", "listen", "[\"{tls}\"]")
        .set_in("tls", "acme", &pebble.acme_flow())
        .set_in("tls", "storage", storage)
        .site("blog", |s| {
            s.address("blog.test")
                .upstream(upstream)
                .set("tls", "{ acme: true }")
                .set("https_redirect", "true")
        })
}

fn dir_storage(dir: &Path) -> String {
    format!(
        "{{ kind: dir, dir: {} }}",
        quote(&dir.display().to_string())
    )
}

fn sites_log(ew: &Edgeward, site: &str) -> PathBuf {
    ew.dir
        .path()
        .join("alice")
        .join("sites")
        .join(format!("{site}.log"))
}

fn fingerprint(ew: &Edgeward, name: &str) -> Option<String> {
    served_certificate(ew.tls_port, name).ok().map(|(fp, _)| fp)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const DAY: i64 = 86_400;

/// A certificate in a dir storage as if ACME had stored it: valid from
/// `from` to `until` days from now, with common name `cn`.
fn stored(storage: &Path, name: &str, cn: &str, from: i64, until: i64) -> TestCert {
    let certs = storage.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    TestCert::valid(
        &certs,
        name,
        cn,
        &[name],
        now() + from * DAY,
        now() + until * DAY,
    )
}

// Handshakes block: the upstream needs a worker of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_ordered_by_http01_and_served_by_sni() {
    let up = Upstream::start("up", Behaviour::Echo).await;
    let port = fixed_port();
    let mut pebble = Pebble::new(port);
    pebble.start().await;
    let storage = tempfile::tempdir().unwrap();
    let conf = conf(&pebble, &up.address(), &dir_storage(storage.path()));
    let ew = Edgeward::start_at(&conf, &[], Some(port)).await;

    let log = wait_file(
        &sites_log(&ew, "blog"),
        "certificate for blog.test issued, expires ",
        1,
        ORDER,
    )
    .await;
    assert!(
        log.contains("[tls] certificate for blog.test issued, expires 20"),
        "{log}"
    );
    // Served by SNI, issued by the CA (no reload in between).
    let (fp, issuer) = served_certificate(ew.tls_port, "blog.test").unwrap();
    assert!(issuer.contains("Pebble"), "issuer {issuer:?}");
    assert!(!fp.is_empty());
    // The CA fetched the token from edgeward itself, never the upstream.
    assert!(pebble.log().contains("blog.test"), "{}", pebble.log());
    let seen = String::from_utf8_lossy(&up.received()).into_owned();
    assert!(!seen.contains("acme-challenge"), "the upstream saw: {seen}");
    // Plain HTTP is redirected now that the name has a certificate.
    let r = get(ew.port, "blog.test", "/x").await.unwrap();
    assert_eq!(r.status, 301, "{}", r.body);
    // A challenge path with an unknown token: edgeward's 404, not the upstream.
    let r = get(ew.port, "blog.test", "/.well-known/acme-challenge/nope")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    // Stored: the key is private to edgeward's user.
    let key = storage.path().join("certs").join("blog.test.key");
    let mode = std::fs::metadata(&key).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600);
    assert!(storage.path().join("certs").join("blog.test.pem").exists());
    let m = ew.metrics().await;
    assert!(
        m.contains("edgeward_acme_orders_total{result=\"issued\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("edgeward_tls_certificate_expiry_timestamp_seconds{site=\"alice/blog\"}"),
        "{m}"
    );
}

/// blog.test's stored certificate has less than a third of its lifetime
/// left: renewed at start (the new one served without a reload); shop.test's
/// has two thirds left: kept, no order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_with_a_third_of_its_lifetime_left_is_renewed() {
    let up = Upstream::start("up", Behaviour::Echo).await;
    let port = fixed_port();
    let mut pebble = Pebble::new(port);
    pebble.start().await;
    let storage = tempfile::tempdir().unwrap();
    // 90 days, 20 left (< 30): due. 90 days, 60 left: not due.
    stored(storage.path(), "blog.test", "old blog", -70, 20);
    stored(storage.path(), "shop.test", "fresh shop", -30, 60);
    let conf = conf(&pebble, &up.address(), &dir_storage(storage.path())).site("shop", |s| {
        s.address("shop.test")
            .upstream(&up.address())
            .set("tls", "{ acme: true }")
    });
    let ew = Edgeward::start_at(&conf, &[], Some(port)).await;
    let log = wait_file(
        &sites_log(&ew, "blog"),
        "certificate for blog.test renewed, expires ",
        1,
        ORDER,
    )
    .await;
    assert!(!log.contains("failed"), "{log}");
    let (_, issuer) = served_certificate(ew.tls_port, "blog.test").unwrap();
    assert!(
        issuer.contains("Pebble"),
        "still the old certificate: {issuer:?}"
    );
    // shop.test keeps its certificate, and the CA never heard of it.
    let shop = tls_connect(ew.tls_port, "shop.test").unwrap();
    assert_eq!(peer_cn(&shop), "fresh shop");
    assert!(!pebble.log().contains("shop.test"), "{}", pebble.log());
    assert!(
        !sites_log(&ew, "shop").exists()
            || !std::fs::read_to_string(sites_log(&ew, "shop"))
                .unwrap()
                .contains("[tls]")
    );
    // The renewed certificate replaced the stored one.
    let pem = std::fs::read_to_string(storage.path().join("certs").join("blog.test.pem")).unwrap();
    assert!(
        pem.matches("BEGIN CERTIFICATE").count() >= 2,
        "a chain: {pem}"
    );
}

/// The CA is down: each order fails with a line in the sites log and a
/// next try a minute or more later; the old certificate is still served; a
/// name without a certificate keeps plain HTTP (its redirect waits) and
/// gets no certificate of another name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ca_down_orders_back_off_and_the_old_certificate_stays() {
    let up = Upstream::start("up", Behaviour::Echo).await;
    let port = fixed_port();
    let pebble = Pebble::new(port); // never started
    let storage = tempfile::tempdir().unwrap();
    stored(storage.path(), "blog.test", "old blog", -70, 20);
    let conf = conf(&pebble, &up.address(), &dir_storage(storage.path())).site("shop", |s| {
        s.address("shop.test")
            .upstream(&up.address())
            .set("tls", "{ acme: true }")
            .set("https_redirect", "true")
    });
    let ew = Edgeward::start_at(&conf, &[], Some(port)).await;
    let blog = wait_file(
        &sites_log(&ew, "blog"),
        "[tls] order for blog.test failed: ",
        1,
        ORDER,
    )
    .await;
    let shop = wait_file(
        &sites_log(&ew, "shop"),
        "[tls] order for shop.test failed: ",
        1,
        ORDER,
    )
    .await;
    for log in [&blog, &shop] {
        let next = log.split("; next try at ").nth(1).expect("a next try");
        let at = chrono::DateTime::parse_from_rfc3339(next.lines().next().unwrap().trim()).unwrap();
        let wait = at.timestamp() - now();
        assert!(
            (50..=70).contains(&wait),
            "first retry in ~1 min, not {wait}s: {log}"
        );
    }
    // The old certificate is still served, and plain HTTP still redirects.
    let c = tls_connect(ew.tls_port, "blog.test").unwrap();
    assert_eq!(peer_cn(&c), "old blog");
    assert_eq!(get(ew.port, "blog.test", "/").await.unwrap().status, 301);
    // shop.test has none: no handshake (no default certificate), and its
    // plain HTTP is served instead of redirected.
    assert!(tls_connect(ew.tls_port, "shop.test").is_err());
    let r = get(ew.port, "shop.test", "/page").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let m = ew.metrics().await;
    assert!(
        m.contains("edgeward_acme_orders_total{result=\"failed\"} 2"),
        "{m}"
    );
    // No tight loop: still one failure each.
    assert_eq!(
        std::fs::read_to_string(sites_log(&ew, "blog"))
            .unwrap()
            .matches("failed")
            .count(),
        1
    );
}

/// A reload adds a name (ordered, served) and removes one (no longer
/// served); a kept name keeps its certificate without a new order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_names() {
    let up = Upstream::start("up", Behaviour::Echo).await;
    let port = fixed_port();
    let mut pebble = Pebble::new(port);
    pebble.start().await;
    let storage = tempfile::tempdir().unwrap();
    let one = conf(&pebble, &up.address(), &dir_storage(storage.path()));
    let ew = Edgeward::start_at(&one, &[], Some(port)).await;
    wait_file(
        &sites_log(&ew, "blog"),
        "certificate for blog.test issued",
        1,
        ORDER,
    )
    .await;
    let blog_fp = fingerprint(&ew, "blog.test").unwrap();
    assert!(tls_connect(ew.tls_port, "shop.test").is_err());

    let two = one.clone().site("shop", |s| {
        s.address("shop.test")
            .upstream(&up.address())
            .set("tls", "{ acme: true }")
    });
    assert!(ew.reload(&two).await.contains("configuration reloaded"));
    wait_file(
        &sites_log(&ew, "shop"),
        "certificate for shop.test issued",
        1,
        ORDER,
    )
    .await;
    let (_, issuer) = served_certificate(ew.tls_port, "shop.test").unwrap();
    assert!(issuer.contains("Pebble"));
    assert_eq!(
        fingerprint(&ew, "blog.test").as_deref(),
        Some(blog_fp.as_str())
    );

    let three = two.remove_site("blog");
    assert!(ew.reload(&three).await.contains("configuration reloaded"));
    eventually(DEADLINE, "blog.test no longer served", || async {
        tls_connect(ew.tls_port, "blog.test").is_err().then_some(())
    })
    .await;
    assert!(served_certificate(ew.tls_port, "shop.test").is_ok());
    let blog_log = std::fs::read_to_string(sites_log(&ew, "blog")).unwrap();
    assert_eq!(blog_log.matches("[tls]").count(), 1, "{blog_log}");
}

/// `check` lists the names that will be ordered, warns about wildcard
/// addresses (DNS-01), and refuses an ACME site without `tls.acme`.
#[test]
fn check_lists_the_names_and_warns_about_wildcards() {
    let pebble = Pebble::new(1);
    let storage = tempfile::tempdir().unwrap();
    let wild = conf(&pebble, "127.0.0.1:9", &dir_storage(storage.path()))
        .set_in("tls", "listen", "[\"127.0.0.1:8443\"]")
        .edit_site("blog", |s| {
            s.address("*.blog.test").address("www.blog.test")
        });
    let (code, out) = check_conf(&wild);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 name(s): blog.test, www.blog.test"), "{out}");
    assert!(
        out.contains("*.blog.test") && out.contains("DNS-01"),
        "{out}"
    );

    let no_global = Conf::new()
        .set_in("tls", "listen", "[\"127.0.0.1:8443\"]")
        .site("blog", |s| {
            s.address("blog.test")
                .upstream("127.0.0.1:9")
                .set("tls", "{ acme: true }")
        });
    let (code, out) = check_conf(&no_global);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("tls.acme: set the global tls.acme section"),
        "{out}"
    );

    let redis_without_key = conf(
        &pebble,
        "127.0.0.1:9",
        "{ kind: redis, redis: { url: \"redis://127.0.0.1:1/0\" } }",
    )
    .set_in("tls", "listen", "[\"127.0.0.1:8443\"]");
    let (code, out) = check_conf(&redis_without_key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("encryption_key_file: required"), "{out}");
}

/// Three instances on one Redis. B starts while the CA is down (its order
/// fails, it backs off); then A1 and A2 start together: exactly one of them
/// orders (the lock), the CA validates at B's port and B answers from the
/// shared tokens; all three serve the same certificate (B and the loser
/// pick it up from Redis); the key in Redis is encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_one_redis_order_once_and_serve_the_same_certificate() {
    let redis = RedisServer::start().await;
    let up = Upstream::start("up", Behaviour::Echo).await;
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("tls-storage.key");
    std::fs::write(&key_file, format!("{}\n", "5a".repeat(32))).unwrap();
    let port_b = fixed_port();
    let mut pebble = Pebble::new(port_b);
    let storage = format!(
        "{{ kind: redis, redis: {{ url: {}, key_prefix: \"ew:tls:\" }}, encryption_key_file: {} }}",
        quote(&redis.url()),
        quote(&key_file.display().to_string())
    );
    let conf = conf(&pebble, &up.address(), &storage);

    let b = Edgeward::start_at(&conf, &[], Some(port_b)).await;
    wait_file(
        &sites_log(&b, "blog"),
        "[tls] order for blog.test failed",
        1,
        ORDER,
    )
    .await;
    pebble.start().await;
    let (a1, a2) = tokio::join!(Edgeward::start(&conf), Edgeward::start(&conf));

    let issued = |ew: &Edgeward| {
        std::fs::read_to_string(sites_log(ew, "blog"))
            .unwrap_or_default()
            .matches("certificate for blog.test issued")
            .count()
    };
    eventually(ORDER, "one instance issued blog.test", || async {
        (issued(&a1) + issued(&a2) >= 1).then_some(())
    })
    .await;
    let fp = eventually(DEADLINE, "all three serve the same certificate", || async {
        let fps = [
            fingerprint(&b, "blog.test"),
            fingerprint(&a1, "blog.test"),
            fingerprint(&a2, "blog.test"),
        ];
        (fps[0].is_some() && fps.iter().all(|f| *f == fps[0])).then(|| fps[0].clone().unwrap())
    })
    .await;
    assert_eq!(issued(&a1) + issued(&a2) + issued(&b), 1, "one order");
    // ...and the other waited instead of ordering too.
    for a in [&a1, &a2] {
        let m = a.metrics().await;
        assert!(
            !m.contains("edgeward_acme_orders_total{result=\"failed\"}"),
            "{m}"
        );
    }
    assert!(!fp.is_empty());
    // The CA reached B, which answered from the token another instance stored.
    let b_access = std::fs::read_to_string(b.dir.path().join("alice/http/blog.log")).unwrap();
    assert!(
        b_access.contains("/.well-known/acme-challenge/"),
        "{b_access}"
    );
    assert!(b_access.contains("\" 200 "), "{b_access}");
    for a in [&a1, &a2] {
        let log =
            std::fs::read_to_string(a.dir.path().join("alice/http/blog.log")).unwrap_or_default();
        assert!(!log.contains("acme-challenge"), "{log}");
    }
    // Redis holds the chain in clear and the key sealed.
    let cert = redis_raw(redis.port, &["HGET", "ew:tls:cert:blog.test", "cert"]).await;
    assert!(String::from_utf8_lossy(&cert).contains("BEGIN CERTIFICATE"));
    let key = redis_raw(redis.port, &["HGET", "ew:tls:cert:blog.test", "key"]).await;
    let key_text = String::from_utf8_lossy(&key);
    assert!(key.len() > 100, "{key_text}");
    assert!(
        !key_text.contains("PRIVATE KEY") && key_text.contains("EW1"),
        "{key_text}"
    );
    let accounts = redis_raw(redis.port, &["KEYS", "ew:tls:account:*"]).await;
    let account_key = String::from_utf8_lossy(&accounts)
        .lines()
        .find(|l| l.starts_with("ew:tls:account:"))
        .expect("an account in Redis")
        .to_string();
    let account = redis_raw(redis.port, &["GET", &account_key]).await;
    assert!(
        !String::from_utf8_lossy(&account).contains("PRIVATE"),
        "the account key is sealed too"
    );
    // The lock is released.
    assert_eq!(
        redis.command(&["EXISTS", "ew:tls:lock:blog.test"]).await,
        ":0"
    );
}

/// One name the CA cannot validate (its DNS points where nobody listens)
/// fails and backs off; the other name of the same site is issued anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_name_does_not_delay_the_others() {
    let up = Upstream::start("up", Behaviour::Echo).await;
    let port = fixed_port();
    let mut pebble = Pebble::new(port);
    pebble.start().await;
    pebble.resolve("bad.blog.test", "127.0.0.2").await;
    let storage = tempfile::tempdir().unwrap();
    let conf = conf(&pebble, &up.address(), &dir_storage(storage.path()))
        .edit_site("blog", |s| s.address("bad.blog.test"));
    let ew = Edgeward::start_at(&conf, &[], Some(port)).await;
    let log = wait_file(
        &sites_log(&ew, "blog"),
        "certificate for blog.test issued",
        1,
        ORDER,
    )
    .await;
    let log = if log.contains("order for bad.blog.test failed") {
        log
    } else {
        wait_file(
            &sites_log(&ew, "blog"),
            "[tls] order for bad.blog.test failed",
            1,
            ORDER,
        )
        .await
    };
    assert!(
        log.contains("127.0.0.2"),
        "the CA's reason is in the line: {log}"
    );
    assert!(served_certificate(ew.tls_port, "blog.test").is_ok());
    assert!(tls_connect(ew.tls_port, "bad.blog.test").is_err());
    // Each name gets its own redirect decision.
    assert_eq!(get(ew.port, "blog.test", "/").await.unwrap().status, 301);
    assert_eq!(
        get(ew.port, "bad.blog.test", "/").await.unwrap().status,
        200
    );
}
