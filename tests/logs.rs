//! Access logs and the sites log through the real binary: formats, escaping,
//! two sites, rotation with traffic running, a full disk.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// alice: blog (default access log), shop (JSON access log in
/// shop-access.log), down (refused upstream, no access log).
fn config(up: &str) -> Conf {
    Conf::new()
        .site("blog", |s| s.address("blog.example.org").upstream(up))
        .site("shop", |s| {
            s.address("shop.example.org")
                .upstream(up)
                .access_log("file: \"shop-access.log\", format: json")
        })
        .site("down", |s| {
            s.address("down.example.org")
                .upstream(&dead_address())
                .access_log("enabled: false")
        })
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read(path)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    eventually(
        DEADLINE,
        &format!("{n} line(s) in {}", path.display()),
        || async {
            let l = lines(path);
            (l.len() >= n).then_some(l)
        },
    )
    .await
}

fn blog_log(ew: &Edgeward) -> PathBuf {
    ew.dir.path().join("alice/http/blog.log")
}

/// GET on a new HTTP/1.1 connection, read until edgeward closes it; the
/// whole response. For a request whose connection is not reused (a 502):
/// edgeward closes it after the request's logging phase, so its access-log
/// line, if it has one, is queued for the log writer by the time this
/// returns.
async fn get_until_closed(port: u16, host: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("connection closed in time")
        .expect("read the response");
    String::from_utf8_lossy(&out).into_owned()
}

/// Returns once every line queued for the log writer before the call is in
/// its file; adds two lines to blog's file (`/barrier-1`, `/barrier-2`).
///
/// The writer takes everything queued as one batch, then writes the batch
/// file by file (lines of one file keep their order; files of one batch do
/// not). A first blog line seen in the file shows that its batch, holding
/// every earlier line, is being written; a second one, queued after that,
/// is in a later batch: seen, it shows the earlier batch is written whole.
async fn log_writer_barrier(ew: &Edgeward) {
    for i in 1..=2 {
        let path = format!("/barrier-{i}");
        let r = get(ew.port, "blog.example.org", &path).await.unwrap();
        assert_eq!(r.status, 200);
        let needle = format!("\"GET {path} HTTP/1.1\"");
        eventually(DEADLINE, &format!("{path} logged"), || async {
            lines(&blog_log(ew))
                .iter()
                .any(|l| l.contains(&needle))
                .then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_format_and_two_sites_two_files() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = Edgeward::start_with_env(&config(&up.address()), &[("TZ", "Europe/Paris")]).await;
    let r = request(
        ew.port,
        "GET",
        Some("Blog.Example.org:8080"),
        "/x?y=1",
        &[
            ("user-agent", "curl/8.0"),
            ("referer", "https://r.example/"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    get(ew.port, "shop.example.org", "/s").await.unwrap();
    let down = get_until_closed(ew.port, "down.example.org", "/").await;
    assert!(down.starts_with("HTTP/1.1 502 "), "{down}");

    let blog = wait_lines(&blog_log(&ew), 1).await;
    let line = &blog[0];
    // blog.example.org 127.0.0.1 - - [21/Nov/2026:13:05:07 +0100] "GET /x?y=1 HTTP/1.1" 200 N "https://r.example/" "curl/8.0"
    let (head, rest) = line.split_once(" [").unwrap();
    assert_eq!(head, "blog.example.org 127.0.0.1 - -");
    let (date, rest) = rest.split_once("] ").unwrap();
    assert!(
        date.ends_with(" +0100") || date.ends_with(" +0200"),
        "TZ honoured: {date}"
    );
    assert_eq!(date.len(), "21/Nov/2026:13:05:07 +0100".len(), "{date}");
    assert_eq!(
        rest,
        format!(
            "\"GET /x?y=1 HTTP/1.1\" 200 {} \"https://r.example/\" \"curl/8.0\"",
            r.body.len()
        )
    );

    let shop = wait_lines(&ew.dir.path().join("alice/http/shop-access.log"), 1).await;
    let v: serde_json::Value = serde_json::from_str(&shop[0]).unwrap();
    assert_eq!(v["site"], "alice/shop");
    assert_eq!(v["path"], "/s");
    assert_eq!(v["status"], 200);
    // The access-log-less site writes nothing, the others only their own
    // file: once every line queued so far is written, down has no file,
    // shop's file has its one line, blog's its own and the barrier's two.
    log_writer_barrier(&ew).await;
    assert!(!ew.dir.path().join("alice/http/down.log").exists());
    assert_eq!(
        lines(&ew.dir.path().join("alice/http/shop-access.log")).len(),
        1
    );
    let blog = lines(&blog_log(&ew));
    assert_eq!(blog.len(), 3, "{blog:#?}");
    assert!(
        blog.iter().all(|l| l.starts_with("blog.example.org ")),
        "{blog:#?}"
    );
    // ... but its upstream failure is in the sites log, for the tenant.
    let sites = wait_lines(&ew.dir.path().join("alice/sites/down.log"), 1).await;
    assert!(sites[0].starts_with('['), "{}", sites[0]);
    assert!(
        sites[0].contains("] Connection to upstream refused ("),
        "{}",
        sites[0]
    );
}

/// Raw bytes on the wire: nothing a client sends can forge a second line or
/// break a field.
#[tokio::test(flavor = "multi_thread")]
async fn log_injection_attempts_give_one_line_each() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = Edgeward::start(
        &config(&up.address()).edit_site("blog", |s| s.access_log("format: advanced")),
    )
    .await;
    let attacks: Vec<Vec<u8>> = vec![
        b"GET /a%0d%0aforged HTTP/1.1\r\nHost: blog.example.org\r\nUser-Agent: x\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: blog.example.org\r\nUser-Agent: a\" \"b\\ \"c\r\n\r\n".to_vec(),
        [
            &b"GET /caf%C3%A9 HTTP/1.1\r\nHost: blog.example.org\r\nUser-Agent: \xc3\x28 \xff\r\nReferer: \x80\tz\r\n\r\n"[..],
        ]
        .concat(),
    ];
    for raw in &attacks {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", ew.port))
            .await
            .unwrap();
        s.write_all(raw).await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
    }
    let got = wait_lines(&blog_log(&ew), attacks.len()).await;
    assert_eq!(got.len(), attacks.len(), "{got:#?}");
    for l in &got {
        assert!(l.starts_with("blog.example.org 127.0.0.1 - - ["), "{l}");
        assert!(l.ends_with(" http 0.") || l.contains(" http "), "{l}");
        // Six quotes from the format, no more: fields cannot be broken.
        assert_eq!(l.matches('"').count(), 6, "{l}");
        assert!(l.bytes().all(|b| (0x20..0x7f).contains(&b)), "{l}");
    }
    assert!(
        got.iter()
            .any(|l| l.contains("\"GET /a%0d%0aforged HTTP/1.1\"")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|l| l.contains("\"a\\x22 \\x22b\\x5C \\x22c\"")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|l| l.contains("\"\\x80\\x09z\" \"\\xC3( \\xFF\"")),
        "{got:#?}"
    );
}

/// Traffic on `workers` connections until `stop`; counts 200s.
fn traffic(
    port: u16,
    workers: usize,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let (stop, ok) = (stop.clone(), ok.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(r) = get(port, "blog.example.org", "/t").await {
                        assert_eq!(r.status, 200);
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect()
}

async fn until_count(counter: &AtomicUsize, n: usize) {
    eventually(DEADLINE, &format!("{n} requests"), || async {
        (counter.load(Ordering::SeqCst) >= n).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_and_usr1_with_traffic_loses_no_line() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&up.address())).await;
    let (stop, ok) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let tasks = traffic(ew.port, 8, stop.clone(), ok.clone());
    until_count(&ok, 300).await;
    let log = blog_log(&ew);
    // The writer is asynchronous: rename once 300 lines are in the file, so
    // that the rotated file is known to hold them.
    wait_lines(&log, 300).await;
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let before = ok.load(Ordering::SeqCst);
    ew.signal("USR1");
    // The new file appears and keeps growing while traffic runs.
    until_count(&ok, before + 300).await;
    wait_lines(&log, 1).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let total = ok.load(Ordering::SeqCst);
    eventually(DEADLINE, "every request logged", || async {
        let (a, b) = (lines(&rotated).len(), lines(&log).len());
        (a + b == total).then_some(())
    })
    .await;
    let (a, b) = (lines(&rotated), lines(&log));
    assert!(a.len() >= 300 && !b.is_empty(), "{} + {}", a.len(), b.len());
    for l in a.iter().chain(b.iter()) {
        assert!(l.starts_with("blog.example.org 127.0.0.1 - - ["), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn copytruncate_with_traffic_leaves_no_hole() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&up.address())).await;
    let (stop, ok) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let workers = 8;
    let tasks = traffic(ew.port, workers, stop.clone(), ok.clone());
    until_count(&ok, 300).await;
    let log = blog_log(&ew);
    let copy = log.with_extension("log.1");
    // logrotate's copytruncate: copy, then truncate in place.
    let c0 = ok.load(Ordering::SeqCst);
    std::fs::copy(&log, &copy).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let c1 = ok.load(Ordering::SeqCst);
    until_count(&ok, c1 + 300).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let total = ok.load(Ordering::SeqCst);
    // Lines written between the copy and the truncate are lost by design of
    // copytruncate; nothing else may be.
    let window = c1 - c0 + workers;
    eventually(DEADLINE, "every request logged", || async {
        let n = lines(&copy).len() + lines(&log).len();
        (n + window >= total).then_some(())
    })
    .await;
    let bytes = std::fs::read(&log).unwrap();
    assert!(!bytes.contains(&0), "a NUL hole in the truncated file");
    assert!(
        bytes.starts_with(b"blog.example.org "),
        "writes continue at offset 0"
    );
    for l in lines(&log) {
        assert!(l.starts_with("blog.example.org 127.0.0.1 - - ["), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_keeps_the_proxy_serving() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    // Every write to /dev/full fails with ENOSPC, whoever we run as.
    let ew = Edgeward::start(&config(&up.address())).await;
    let http = ew.dir.path().join("alice/http");
    std::fs::create_dir_all(&http).unwrap();
    std::os::unix::fs::symlink("/dev/full", http.join("blog.log")).unwrap();
    ew.signal("USR1");
    ew.wait_log("SIGUSR1", 1).await;
    for i in 0..50 {
        let r = get(ew.port, "blog.example.org", &format!("/{i}"))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    // Other sites' logs are unaffected.
    get(ew.port, "shop.example.org", "/").await.unwrap();
    wait_lines(&ew.dir.path().join("alice/http/shop-access.log"), 1).await;
    let log = ew.wait_log("cannot write", 1).await;
    assert_eq!(
        log.matches("cannot write").count(),
        1,
        "reported once a minute at most:\n{log}"
    );
    assert!(log.contains("No space left on device"), "{log}");
    let m = eventually(DEADLINE, "write errors counted", || async {
        let m = ew.metrics().await;
        (!m.contains("edgeward_log_write_errors_total 0")).then_some(m)
    })
    .await;
    assert!(!m.contains("edgeward_log_dropped_lines_total 0\n"), "{m}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_opens_new_sites_files_and_formats_are_checked() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&up.address())).await;
    let with_news = config(&up.address()).site("news", |s| {
        s.address("news.example.org").upstream(&up.address())
    });
    ew.reload(&with_news).await;
    get(ew.port, "news.example.org", "/n").await.unwrap();
    let news = wait_lines(&ew.dir.path().join("alice/http/news.log"), 1).await;
    assert!(news[0].contains("\"GET /n HTTP/1.1\" 200"), "{}", news[0]);

    let bad =
        config(&up.address()).edit_site("blog", |s| s.access_log("format: '{status} {nope}'"));
    let log = ew.reload(&bad).await;
    assert!(
        log.contains("access_log.format: column 10 of the format: unknown variable `nope`"),
        "{log}"
    );
    let (code, out) = check_path(&ew.config_path);
    assert_eq!(code, 1);
    assert!(out.contains("unknown variable `nope`"), "{out}");
}

fn open_files(pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn removed_sites_files_are_closed_at_reload() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let ew = Edgeward::start(&config(&up.address())).await;
    get(ew.port, "shop.example.org", "/").await.unwrap();
    let shop = ew.dir.path().join("alice/http/shop-access.log");
    wait_lines(&shop, 1).await;
    assert!(open_files(ew.pid()).contains(&shop), "shop's log is open");
    // A configuration without shop.
    let without_shop = config(&up.address()).remove_site("shop");
    assert!(!without_shop.to_string().contains("shop"), "{without_shop}");
    ew.reload(&without_shop).await;
    eventually(DEADLINE, "shop's log closed", || async {
        (!open_files(ew.pid()).contains(&shop)).then_some(())
    })
    .await;
    assert_eq!(
        get(ew.port, "shop.example.org", "/").await.unwrap().status,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_ip_behind_trusted_proxies() {
    let up = Upstream::start("A", Behaviour::Echo).await;
    let cfg = config(&up.address())
        .set("trusted_proxies", "[\"127.0.0.0/8\"]")
        .edit_site("blog", |s| {
            s.access_log("format: '{client_ip} {peer_ip} {request_header:x-request-id}'")
        });
    let ew = Edgeward::start(&cfg).await;
    let r = request(
        ew.port,
        "GET",
        Some("blog.example.org"),
        "/",
        &[("x-forwarded-for", "192.0.2.1, 203.0.113.5, 127.0.0.9")],
    )
    .await
    .unwrap();
    let id = r.header("x-request-id").unwrap();
    let got = wait_lines(&blog_log(&ew), 1).await;
    assert_eq!(got[0], format!("203.0.113.5 127.0.0.1 {id}"));
}
