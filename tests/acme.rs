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
    format!("{{ kind: dir, dir: {} }}", quote(&dir.display().to_string()))
}

fn sites_log(ew: &Edgeward, site: &str) -> PathBuf {
    ew.dir.path().join("alice").join("sites").join(format!("{site}.log"))
}

fn fingerprint(ew: &Edgeward, name: &str) -> Option<String> {
    served_certificate(ew.tls_port, name).ok().map(|(fp, _)| fp)
}

// Handshakes block: the upstream needs a worker of its own meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_ordered_by_http01_and_served_by_sni() {
    let up = Upstream::start("up", Behaviour::Echo).await;
    let port = free_port();
    let mut pebble = Pebble::new(port);
    pebble.start().await;
    let storage = tempfile::tempdir().unwrap();
    let conf = conf(&pebble, &up.address(), &dir_storage(storage.path()));
    let ew = Edgeward::start_at(&conf, &[], Some(port)).await;

    let log = wait_file(&sites_log(&ew, "blog"), "certificate for blog.test issued, expires ", 1, ORDER).await;
    assert!(log.contains("[tls] certificate for blog.test issued, expires 20"), "{log}");
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
    let r = get(ew.port, "blog.test", "/.well-known/acme-challenge/nope").await.unwrap();
    assert_eq!(r.status, 404);
    // Stored: the key is private to edgeward's user.
    let key = storage.path().join("certs").join("blog.test.key");
    let mode = std::fs::metadata(&key).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600);
    assert!(storage.path().join("certs").join("blog.test.pem").exists());
    let m = ew.metrics().await;
    assert!(m.contains("edgeward_acme_orders_total{result=\"issued\"} 1"), "{m}");
    assert!(m.contains("edgeward_tls_certificate_expiry_timestamp_seconds{site=\"alice/blog\"}"), "{m}");
}
