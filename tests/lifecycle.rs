//! Stopping: SIGTERM lets requests in flight finish and exits as soon as they
//! have; SIGINT stops at once; USR1 does not kill the process.

mod common;
use common::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One site `slow.test` on `up`, this grace period, no admin listener.
fn config(up: &str, grace: &str) -> Conf {
    Conf::new()
        .no_admin()
        .set("grace_period", grace)
        .site("slow", |s| s.address("slow.test").upstream(up))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_requests_in_flight_finish() {
    let up = Upstream::start("slow", Behaviour::Delay(Duration::from_millis(1500))).await;
    let mut ew = Edgeward::start(&config(&up.address(), "10s")).await;
    let port = ew.port;
    let inflight: Vec<_> = (0..5)
        .map(|i| tokio::spawn(async move { get(port, "slow.test", &format!("/{i}")).await }))
        .collect();
    // All five are at the upstream before the signal.
    eventually(DEADLINE, "5 requests at the upstream", || async {
        (up.hits.load(Ordering::SeqCst) == 5).then_some(())
    })
    .await;
    let t0 = Instant::now();
    ew.signal("TERM");
    for r in inflight {
        let r = r.await.unwrap().expect("in-flight request answered");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.upstream_name(), "slow");
    }
    let status = ew.wait_exit(Duration::from_secs(12)).await;
    assert!(status.success(), "exit status {status}");
    // It left as soon as the requests were done, not after the 10 s grace.
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        get(port, "slow.test", "/").await.is_err(),
        "no longer listening"
    );
    let log = ew.log();
    assert!(log.contains("SIGTERM: graceful stop"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_gives_up_at_the_grace_period() {
    let up = Upstream::start("stall", Behaviour::Stall).await;
    let mut ew = Edgeward::start(&config(&up.address(), "1s")).await;
    let port = ew.port;
    let stuck = tokio::spawn(async move { get(port, "slow.test", "/stuck").await });
    // Wait until the request is in flight: its head reached the upstream.
    // A client that gave up first fails here with its error, not a timeout.
    let arrived = eventually(DEADLINE, "request in flight", || async {
        if stuck.is_finished() {
            return Some(false);
        }
        String::from_utf8_lossy(&up.received())
            .contains("GET /stuck HTTP/1.1")
            .then_some(true)
    })
    .await;
    if !arrived {
        let r = stuck.await.unwrap().map(|r| r.status);
        panic!("the request ended before reaching the upstream: {r:?}");
    }
    assert_eq!(up.hits.load(Ordering::SeqCst), 1, "one request upstream");
    let t0 = Instant::now();
    ew.signal("TERM");
    ew.wait_exit(Duration::from_secs(10)).await;
    let took = t0.elapsed();
    // It waited for the stuck request, but not past the grace period.
    assert!(
        took >= Duration::from_millis(900),
        "left before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "grace 1s, took {took:?}");
    let r = stuck.await.unwrap();
    assert!(
        r.is_err() || r.unwrap().status >= 500,
        "the stuck request was not served"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_at_once_and_usr1_does_not_kill() {
    let up = Upstream::start("x", Behaviour::Echo).await;
    let mut ew = Edgeward::start(&config(&up.address(), "30s")).await;
    ew.signal("USR1");
    ew.wait_log("SIGUSR1", 1).await;
    assert_eq!(get(ew.port, "slow.test", "/").await.unwrap().status, 200);
    let t0 = Instant::now();
    ew.signal("INT");
    ew.wait_exit(Duration::from_secs(5)).await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
}

/// A listen address another process holds: edgeward says which and exits,
/// before starting anything (and without listening on it even briefly).
#[test]
fn a_taken_listen_address_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgeward.yaml");
    std::fs::write(
        &path,
        config("127.0.0.1:9", "1s").render(&addr, "-", dir.path()),
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}: Address already in use")),
        "{stderr}"
    );
}
