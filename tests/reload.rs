//! SIGHUP reloads: routing changes, broken files keep the old configuration,
//! and requests in flight during many reloads are all answered correctly.

mod common;
use common::*;
use std::sync::atomic::Ordering;

/// blog.example.org on `a`; with `with_new_site`, news.example.org on `b`.
fn config(a: &str, b: &str, with_new_site: bool) -> Conf {
    let c = Conf::new().site("blog", |s| s.address("blog.example.org").upstream(a));
    if with_new_site {
        c.site("news", |s| {
            s.address("news.example.org")
                .upstream(b)
                .upstream_opt("read_timeout", "30s")
        })
    } else {
        c
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_changes_routing() {
    let a = Upstream::start("A", Behaviour::Echo).await;
    let b = Upstream::start("B", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&a.address(), &b.address(), false)).await;
    assert_eq!(
        get(ew.port, "news.example.org", "/").await.unwrap().status,
        404
    );

    let log = ew.reload(&config(&a.address(), &b.address(), true)).await;
    assert!(log.contains("configuration reloaded from"), "{log}");
    let r = get(ew.port, "news.example.org", "/").await.unwrap();
    assert_eq!((r.status, r.upstream_name()), (200, "B"));

    // blog moves to B, news goes away.
    ew.reload(&config(&b.address(), &a.address(), false)).await;
    let r = get(ew.port, "blog.example.org", "/").await.unwrap();
    assert_eq!((r.status, r.upstream_name()), (200, "B"));
    assert_eq!(
        get(ew.port, "news.example.org", "/").await.unwrap().status,
        404
    );
    assert!(
        ew.metrics()
            .await
            .contains("edgeward_config_reloads_total{result=\"success\"} 2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_reload_keeps_serving_and_says_where() {
    let a = Upstream::start("A", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&a.address(), &a.address(), false)).await;

    // Break the blog's upstream: the error names the file, line and column.
    let broken = config(&a.address(), &a.address(), false)
        .to_string()
        .replace("{ address:", "{ adress:");
    let (line, col) = position_of(&broken, "adress");
    let log = ew.reload_text(&broken).await;
    let path = ew.config_path.display().to_string();
    assert!(
        log.contains("configuration reload failed, still serving the previous configuration"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{path}:{line}:{col}: site alice/blog: upstream.adress: unknown field `adress`"
        )),
        "{log}"
    );
    let r = get(ew.port, "blog.example.org", "/").await.unwrap();
    assert_eq!((r.status, r.upstream_name()), (200, "A"));

    // A YAML syntax error, too.
    let log = ew.reload_text("listen: [\n").await;
    assert!(log.contains(&format!("{path}:2:1: invalid YAML")), "{log}");
    assert_eq!(
        get(ew.port, "blog.example.org", "/").await.unwrap().status,
        200
    );

    let m = ew.metrics().await;
    assert!(
        m.contains("edgeward_config_reloads_total{result=\"failure\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("edgeward_config_reloads_total{result=\"success\"} 0"),
        "{m}"
    );
}

/// 1,000 concurrent requests while 20 reloads happen: every request answered
/// by the right upstream, none failed. Half of them are held at the upstream
/// for the whole reload storm (they keep the configuration they started
/// with); the other half start between reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_requests_during_twenty_reloads() {
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let a = Upstream::start("A", Behaviour::Gated(gate)).await;
    let b = Upstream::start("B", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&a.address(), &b.address(), false)).await;
    let port = ew.port;

    let spawn = |path: String| {
        tokio::spawn(async move { (path.clone(), get(port, "blog.example.org", &path).await) })
    };
    let mut requests: Vec<_> = (0..500).map(|i| spawn(format!("/hold/{i}"))).collect();
    eventually(DEADLINE, "500 held requests at the upstream", || async {
        (a.hits.load(Ordering::SeqCst) == 500).then_some(())
    })
    .await;
    for n in 0..20 {
        // Alternate between two configurations that both send blog to A.
        let log = ew
            .reload(&config(&a.address(), &b.address(), n % 2 == 0))
            .await;
        assert!(!log.contains("reload failed"), "{log}");
        requests.extend((0..25).map(|i| spawn(format!("/now/{n}/{i}"))));
    }
    open_gate.send(true).unwrap();
    let mut failures = Vec::new();
    for r in requests {
        let (path, r) = r.await.unwrap();
        match r {
            Ok(r)
                if r.status == 200
                    && r.upstream_name() == "A"
                    && r.body.contains(&format!("GET {path}\n")) => {}
            Ok(r) => failures.push(format!("{path}: {} {}", r.status, r.body)),
            Err(e) => failures.push(format!("{path}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // Requests are counted just after their response went out: poll.
    let want = "edgeward_requests_total{code_class=\"2xx\",site=\"alice/blog\"} 1000\n";
    let m = eventually(DEADLINE, "1000 requests counted", || async {
        let m = ew.metrics().await;
        m.contains(want).then_some(m)
    })
    .await;
    assert!(
        m.contains("edgeward_config_reloads_total{result=\"success\"} 20"),
        "{m}"
    );
    eprintln!(
        "reload under load: 1000/1000 requests answered 200 by the right upstream during 20 reloads"
    );
}
