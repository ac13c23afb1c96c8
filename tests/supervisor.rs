//! The supervisor with real child programs (tests/fixtures/app.py).

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Tests run in parallel: each edgeward gets its own program ports.
fn port_range() -> String {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    thread_local!(static MINE: u16 = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let base = 20000 + MINE.with(|n| *n % 90) * 100;
    format!("{base}-{}", base + 99)
}

/// Grace period 10s, this test's program ports; sites come from `app`.
fn config() -> Conf {
    Conf::new().set("grace_period", "10s").set(
        "supervisor",
        &format!("{{ port_range: {} }}", quote(&port_range())),
    )
}

/// A site `<name>.test` running tests/fixtures/app.py, with these more
/// upstream settings.
fn app<'a>(opts: &'a [(&'a str, &'a str)]) -> impl FnOnce(Site) -> Site + 'a {
    move |s| {
        let host = format!("{}.test", s.name());
        let mut s = s.address(&host).command("python3 app.py", &fixtures());
        for (k, v) in opts {
            s = s.upstream_opt(k, v);
        }
        s
    }
}

fn sites_log(ew: &Edgeward, site: &str) -> String {
    std::fs::read_to_string(ew.dir.path().join(format!("alice/sites/{site}.log")))
        .unwrap_or_default()
}

async fn wait_sites_log(ew: &Edgeward, site: &str, needle: &str, count: usize) -> String {
    eventually(
        Duration::from_secs(30),
        &format!("{needle:?} x{count} in {site}'s sites log"),
        || async {
            let l = sites_log(ew, site);
            (l.matches(needle).count() >= count).then_some(l)
        },
    )
    .await
}

fn pid_of(body: &str) -> u32 {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
}

fn alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn group_alive(pgid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

async fn wait_gone(pid: u32) {
    eventually(
        Duration::from_secs(15),
        &format!("process {pid} gone"),
        || async { (!alive(pid)).then_some(()) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_start_serves_the_first_request_with_an_explicit_environment() {
    let ew = Edgeward::start_with_env(
        &config().site("app", app(&[("environment", "{ CUSTOM: \"yes\" }")])),
        &[("EDGEWARD_TEST_SECRET", "must-not-leak")],
    )
    .await;
    let r = get(ew.port, "app.test", "/hello").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("path=/hello ") && r.body.contains(" custom=yes "),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(&format!("home={}", fixtures().display())),
        "{}",
        r.body
    );
    let env = r.body.split("env=").nth(1).unwrap().trim();
    for k in ["CUSTOM", "HOME", "HOST", "IP", "LANG", "PATH", "PORT"] {
        assert!(env.split(',').any(|e| e == k), "{k} missing from {env}");
    }
    for k in ["EDGEWARD_TEST_SECRET", "RUST_LOG", "CARGO"] {
        assert!(!env.contains(k), "edgeward's own {k} leaked: {env}");
    }
    let port: u16 = r
        .body
        .split("port=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((20000..=29999).contains(&port));
    let pid = pid_of(&r.body);
    wait_sites_log(&ew, "app", &format!("[{pid}] STDERR: hello on stderr"), 1).await;
    // Lines reach the file asynchronously: wait for the last one we check.
    let log = wait_sites_log(&ew, "app", &format!("] Upstream started PID: {pid}\n"), 1).await;
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines[0].starts_with('[') && lines[0].ends_with("] Upstream starting: python3 app.py"),
        "{log}"
    );
    assert!(
        log.contains(&format!("] Upstream started PID: {pid}\n")),
        "{log}"
    );
    assert!(
        log.contains(&format!("] [{pid}] app starting pid={pid} port={port}\n")),
        "{log}"
    );
    // The same process serves the next request.
    let r = get(ew.port, "app.test", "/again").await.unwrap();
    assert_eq!(pid_of(&r.body), pid);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_first_requests_start_one_process() {
    let ew = Edgeward::start(&config().site(
        "app",
        app(&[("environment", "{ APP_START_DELAY: \"0.5\" }")]),
    ))
    .await;
    let port = ew.port;
    let tasks: Vec<_> = (0..50)
        .map(|i| tokio::spawn(async move { get(port, "app.test", &format!("/{i}")).await }))
        .collect();
    let mut pids = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        pids.insert(pid_of(&r.body));
    }
    assert_eq!(pids.len(), 1, "{pids:?}");
    let log = wait_sites_log(&ew, "app", "Upstream started PID:", 1).await;
    assert_eq!(log.matches("Upstream starting:").count(), 1, "{log}");
    assert_eq!(log.matches("Upstream started PID:").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_stop_then_a_request_wakes_it() {
    let ew = Edgeward::start(&config().site("app", app(&[("idle_timeout", "300ms")]))).await;
    let first = pid_of(&get(ew.port, "app.test", "/").await.unwrap().body);
    wait_sites_log(&ew, "app", &format!("Upstream stopped PID: {first}"), 1).await;
    wait_gone(first).await;
    let r = get(ew.port, "app.test", "/").await.unwrap();
    assert_eq!(r.status, 200);
    let second = pid_of(&r.body);
    assert_ne!(first, second);
    let log = wait_sites_log(&ew, "app", "Upstream started PID:", 2).await;
    assert_eq!(
        log.matches("Upstream starting: python3 app.py").count(),
        2,
        "{log}"
    );
    assert_eq!(log.matches("Upstream started PID:").count(), 2, "{log}");
    assert!(
        log.contains(&format!("Upstream stopping PID: {first} (idle for")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_is_restarted_and_a_crash_loop_backs_off() {
    let ew = Edgeward::start(
        &config()
            .site("app", app(&[]))
            .site("broken", app(&[("environment", "{ APP_MODE: crash }")])),
    )
    .await;
    let first = pid_of(&get(ew.port, "app.test", "/").await.unwrap().body);
    let r = get(ew.port, "app.test", "/crash").await.unwrap();
    assert_eq!(r.status, 502, "the program died mid-request");
    wait_sites_log(
        &ew,
        "app",
        &format!("Upstream exited PID: {first} (return code: 7)"),
        1,
    )
    .await;
    let r = get(ew.port, "app.test", "/").await.unwrap();
    assert_eq!(r.status, 200, "restarted by the next request");
    assert_ne!(pid_of(&r.body), first);

    // A program that always exits at start: 502, 502, then 503 + Retry-After.
    let r = get(ew.port, "broken.test", "/").await.unwrap();
    assert_eq!(r.status, 502);
    assert!(r.body.contains("failed to start"), "{}", r.body);
    let r = get(ew.port, "broken.test", "/").await.unwrap();
    assert_eq!(r.status, 502);
    let r = get(ew.port, "broken.test", "/").await.unwrap();
    assert_eq!(r.status, 503, "{}", r.body);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let log = wait_sites_log(&ew, "broken", "crashed 2 times in a row", 1).await;
    assert!(
        log.contains("Upstream starting failed: python3 app.py (return code: 3 | reason: exited before listening)"),
        "{log}"
    );
    assert!(log.contains("STDERR: crashing on purpose"), "{log}");
    assert!(
        log.contains("crashed 2 times in a row; next start in 1s"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_kills_a_program_that_ignores_sigterm_and_its_grandchildren() {
    let dir = tempfile::tempdir().unwrap();
    let gc_file = dir.path().join("grandchild.pid");
    let family_env = format!(
        "{{ APP_MODE: grandchild, GRANDCHILD_PID_FILE: {} }}",
        quote(&gc_file.display().to_string())
    );
    let ew = Edgeward::start(
        &config()
            .site(
                "stubborn",
                app(&[
                    ("environment", "{ APP_MODE: ignore_term }"),
                    ("idle_timeout", "200ms"),
                ]),
            )
            .site(
                "family",
                app(&[("environment", &family_env), ("idle_timeout", "200ms")]),
            ),
    )
    .await;
    let stubborn = pid_of(&get(ew.port, "stubborn.test", "/").await.unwrap().body);
    let family = pid_of(&get(ew.port, "family.test", "/").await.unwrap().body);
    let grandchild: u32 = std::fs::read_to_string(&gc_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(grandchild));
    let t0 = Instant::now();
    wait_gone(family).await;
    wait_gone(grandchild).await;
    wait_gone(stubborn).await;
    // The stubborn one needed SIGKILL after the 5 s grace.
    assert!(t0.elapsed() >= Duration::from_secs(5), "{:?}", t0.elapsed());
    wait_sites_log(
        &ew,
        "stubborn",
        &format!("Upstream stopped PID: {stubborn} (signal: 9)"),
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_captured_line_by_line_whatever_it_is() {
    let ew = Edgeward::start(&config().site(
        "noisy",
        app(&[
            ("environment", "{ APP_MODE: noisy }"),
            ("idle_timeout", "300ms"),
        ]),
    ))
    .await;
    let pid = pid_of(&get(ew.port, "noisy.test", "/").await.unwrap().body);
    // The partial last line is flushed when the program exits (idle stop).
    let log = wait_sites_log(&ew, "noisy", &format!("[{pid}] partial-last-line"), 1).await;
    let cut: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[line cut at 16 KiB]"))
        .collect();
    assert_eq!(cut.len(), 6, "100 KiB = 6 cut lines of 16 KiB + the rest");
    let rest = 100 * 1024 - 6 * 16 * 1024;
    assert!(
        log.lines()
            .any(|l| l.ends_with(&format!("[{pid}] {}", "x".repeat(rest)))),
        "the rest of the long line"
    );
    assert!(
        log.contains(&format!("[{pid}] bad \u{fffd}\u{fffd} utf8\n")),
        "lossy, \\r stripped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_failures_are_explained() {
    let nowhere = quote("/nonexistent/edgeward-test");
    let ew = Edgeward::start(&config().site("app", app(&[("working_dir", &nowhere)]))).await;
    let r = get(ew.port, "app.test", "/").await.unwrap();
    assert_eq!(r.status, 502);
    assert!(r.body.contains("failed to start"), "{}", r.body);
    let log = wait_sites_log(&ew, "app", "Upstream starting failed", 1).await;
    assert!(log.contains("Upstream starting failed: python3 app.py (return code: - | reason: working directory /nonexistent/edgeward-test does not exist)"), "{log}");

    let command = quote("no-such-command-xyz --port 1");
    let ew = Edgeward::start(&config().site("app", app(&[("command", &command)]))).await;
    let r = get(ew.port, "app.test", "/").await.unwrap();
    assert_eq!(r.status, 502);
    let log = wait_sites_log(&ew, "app", "Upstream starting failed", 1).await;
    assert!(log.contains("Upstream starting failed: no-such-command-xyz --port 1 (return code: 127 | reason: exited before listening)"), "{log}");
    // The program's stderr is captured by its own reader: its line may land
    // after the failure line.
    let log = wait_sites_log(&ew, "app", "not found", 1).await;
    assert!(
        log.contains("STDERR: ") && log.contains("not found"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_restarts_only_the_changed_site() {
    let ew = Edgeward::start(&config().site("one", app(&[])).site("two", app(&[]))).await;
    let one = pid_of(&get(ew.port, "one.test", "/").await.unwrap().body);
    let two = pid_of(&get(ew.port, "two.test", "/").await.unwrap().body);
    let v2 = [("environment", "{ CUSTOM: \"v2\" }")];
    ew.reload(&config().site("one", app(&[])).site("two", app(&v2)))
        .await;
    wait_gone(two).await;
    let r = get(ew.port, "two.test", "/").await.unwrap();
    assert!(r.body.contains("custom=v2"), "{}", r.body);
    assert_ne!(pid_of(&r.body), two);
    assert_eq!(
        pid_of(&get(ew.port, "one.test", "/").await.unwrap().body),
        one,
        "untouched"
    );
    // Removing a site stops its program.
    ew.reload(&config().site("two", app(&v2))).await;
    wait_gone(one).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let gc_file = dir.path().join("grandchild.pid");
    let family_env = format!(
        "{{ APP_MODE: grandchild, GRANDCHILD_PID_FILE: {} }}",
        quote(&gc_file.display().to_string())
    );
    let mut ew = Edgeward::start(
        &config()
            .site("one", app(&[]))
            .site("family", app(&[("environment", &family_env)])),
    )
    .await;
    let one = pid_of(&get(ew.port, "one.test", "/").await.unwrap().body);
    let family = pid_of(&get(ew.port, "family.test", "/").await.unwrap().body);
    let grandchild: u32 = std::fs::read_to_string(&gc_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    ew.signal("TERM");
    let status = ew.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
    for pgid in [one, family] {
        eventually(Duration::from_secs(5), "process group gone", || async {
            (!group_alive(pgid)).then_some(())
        })
        .await;
    }
    wait_gone(grandchild).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_group_and_open_files_limit() {
    // The program runs as nobody: give it a copy of the fixture it can read
    // wherever the checkout is (a clone in a 0700 temp dir is not).
    use std::os::unix::fs::PermissionsExt;
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(fixtures().join("app.py"), open.path().join("app.py")).unwrap();
    std::fs::set_permissions(
        open.path().join("app.py"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let working_dir = quote(&open.path().display().to_string());
    let cfg = config().site(
        "app",
        app(&[
            ("working_dir", &working_dir),
            ("user", "nobody"),
            ("group", "nogroup"),
            ("max_open_files", "321"),
        ]),
    );
    let ew = Edgeward::start(&cfg).await;
    let r = get(ew.port, "app.test", "/").await.unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.contains("uid=65534 gid=65534 nofile=321 "),
            "{}",
            r.body
        );
    } else {
        assert_eq!(r.status, 502);
        let log = wait_sites_log(&ew, "app", "Upstream starting failed", 1).await;
        assert!(
            log.contains("upstream.user needs edgeward to run as root"),
            "{log}"
        );
    }
    let (code, out) = check_conf(&config().site("app", app(&[("user", "no-such-user-xyz")])));
    assert_eq!(code, 1);
    assert!(
        out.contains("upstream.user: no user \"no-such-user-xyz\" on this system"),
        "{out}"
    );
}
