//! Test harness: the real `edgeward` binary, real upstream HTTP servers on
//! ephemeral loopback ports, a real HTTP client. Waiting is always polling
//! with a deadline, never a bare sleep.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// Poll `f` until it returns Some, or panic with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A free loopback port (bound, then released for the process under test).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Whether process `pid` holds the TCP socket listening on 127.0.0.1 or a
/// wildcard address at `port` (Linux: /proc/net/tcp{,6} and the process's
/// file descriptors).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let port_hex = format!(":{port:04X}");
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode.
            if f.len() > 9 && f[1].ends_with(&port_hex) && f[3] == "0A" {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
    })
}

// ---------------------------------------------------------------- upstreams

/// What a test upstream does with each request.
#[derive(Clone)]
pub enum Behaviour {
    /// 200 with a body describing the request: `name`, method, path, then
    /// every header as `name: value`, one per line.
    Echo,
    /// Waits this long, then answers like Echo.
    Delay(Duration),
    /// Accepts the connection and never answers.
    Stall,
    /// Like Echo, but requests whose path starts with `/hold` wait until the
    /// gate is opened (set to true).
    Gated(tokio::sync::watch::Receiver<bool>),
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(name: &str, behaviour: Behaviour) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let (n, h) = (name.to_string(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (n, h, b) = (n.clone(), h.clone(), behaviour.clone());
                tokio::spawn(async move {
                    if matches!(b, Behaviour::Stall) {
                        // Hold the connection open, read nothing, answer nothing.
                        h.fetch_add(1, Ordering::SeqCst);
                        let _keep = stream;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return;
                    }
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (n, h, b) = (n.clone(), h.clone(), b.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            match b {
                                Behaviour::Delay(d) => tokio::time::sleep(d).await,
                                Behaviour::Gated(mut gate)
                                    if req.uri().path().starts_with("/hold") =>
                                {
                                    let _ = gate.wait_for(|open| *open).await;
                                }
                                _ => {}
                            }
                            let mut body = format!("{n}\n{} {}\n", req.method(), req.uri());
                            for (k, v) in req.headers() {
                                body.push_str(&format!(
                                    "{}: {}\n",
                                    k,
                                    String::from_utf8_lossy(v.as_bytes())
                                ));
                            }
                            // A request body is read whole and summed up
                            // after the headers.
                            let received = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            if !received.is_empty() {
                                body.push_str(&format!(
                                    "received-body-bytes: {}\nreceived-body-tail: {}\n",
                                    received.len(),
                                    String::from_utf8_lossy(
                                        &received[received.len().saturating_sub(32)..]
                                    )
                                ));
                            }
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "text/plain")
                                    .header("x-upstream", n.as_str())
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
            hits,
            task,
        }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

/// An address nothing listens on (connections are refused).
pub fn dead_address() -> String {
    format!("127.0.0.1:{}", free_port())
}

// ------------------------------------------------------------------ client

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
    pub version: http::Version,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request headers the Echo upstream saw, lowercased names.
    pub fn echoed_headers(&self) -> HashMap<String, Vec<String>> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for line in self.body.lines().skip(2) {
            if let Some((k, v)) = line.split_once(": ") {
                map.entry(k.to_ascii_lowercase())
                    .or_default()
                    .push(v.to_string());
            }
        }
        map
    }

    /// The upstream name an Echo upstream put first.
    pub fn upstream_name(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }
}

/// One request on a new HTTP/1.1 connection.
pub async fn request(
    port: u16,
    method: &str,
    host: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut b = Request::builder().method(method).uri(path);
    if let Some(h) = host {
        b = b.header("host", h);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    send(&mut sender, req).await
}

async fn send<S>(sender: &mut S, req: Request<Full<Bytes>>) -> Result<Reply, String>
where
    S: SendRequest,
{
    let resp = sender.send(req).await?;
    let status = resp.status().as_u16();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        version,
    })
}

pub trait SendRequest {
    fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> impl std::future::Future<Output = Result<Response<Incoming>, String>>;
}

impl SendRequest for hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
        self.send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))
    }
}

impl SendRequest for hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
        self.send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))
    }
}

pub async fn get(port: u16, host: &str, path: &str) -> Result<Reply, String> {
    request(port, "GET", Some(host), path, &[]).await
}

/// One GET over HTTP/2 cleartext with prior knowledge; the host goes in
/// `:authority`.
pub async fn get_h2c(port: u16, host: &str, path: &str) -> Result<Reply, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://{host}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&mut sender, req).await
}

// ---------------------------------------------------------------- edgeward

pub struct Edgeward {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub port: u16,
    pub admin_port: u16,
    pub log_path: PathBuf,
    child: Option<Child>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_edgeward")
}

/// Fill `{listen}`, `{admin}` and `{dir}` in a configuration template.
pub fn render(template: &str, port: u16, admin_port: u16, dir: &Path) -> String {
    template
        .replace("{listen}", &format!("127.0.0.1:{port}"))
        .replace("{admin}", &format!("127.0.0.1:{admin_port}"))
        .replace("{dir}", &dir.display().to_string())
}

impl Edgeward {
    /// Start the real binary on `template` (placeholders: `{listen}`,
    /// `{admin}`, `{dir}`), and wait until it serves.
    pub async fn start(template: &str) -> Edgeward {
        Self::start_with_env(template, &[]).await
    }

    pub async fn start_with_env(template: &str, env: &[(&str, &str)]) -> Edgeward {
        let mut dir = tempfile::tempdir().expect("temp dir");
        // A port picked here can be taken by someone else before edgeward
        // binds it: try again with fresh ports in that case.
        for _attempt in 0..5 {
            let (port, admin_port) = (free_port(), free_port());
            let config_path = dir.path().join("edgeward.yaml");
            std::fs::write(&config_path, render(template, port, admin_port, dir.path())).unwrap();
            let log_path = dir.path().join("edgeward.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut cmd = Command::new(binary());
            cmd.args(["run", "-c"])
                .arg(&config_path)
                .current_dir(dir.path())
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn edgeward");
            let mut ew = Edgeward {
                dir,
                config_path,
                port,
                admin_port,
                log_path,
                child: Some(child),
            };
            match ew.wait_ready().await {
                Ok(()) => return ew,
                Err(log) if log.contains("Address already in use") => {
                    dir = ew.take_dir();
                    continue;
                }
                Err(log) => panic!("edgeward did not start:\n{log}"),
            }
        }
        panic!("edgeward could not find free ports in 5 attempts");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("exited with {status}\n{}", self.log()));
            }
            // Listening, and the listener is edgeward's: a port picked by
            // `free_port` may have been taken meanwhile by another test's
            // server (which would answer in edgeward's place until edgeward
            // gives up with "Address already in use").
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok()
                && listens_on(self.pid(), self.port)
            {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                return Err(format!("not listening after {DEADLINE:?}\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Everything edgeward logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Wait until the diagnostics log has `needle` at least `count` times.
    pub async fn wait_log(&self, needle: &str, count: usize) -> String {
        eventually(
            DEADLINE,
            &format!("log line {needle:?} x{count}"),
            || async {
                let log = self.log();
                (log.matches(needle).count() >= count).then_some(log)
            },
        )
        .await
    }

    /// Replace the configuration file (same placeholders as `start`).
    pub fn write_config(&self, template: &str) {
        std::fs::write(
            &self.config_path,
            render(template, self.port, self.admin_port, self.dir.path()),
        )
        .unwrap();
    }

    /// Rewrite the file, SIGHUP, and wait for the reload's outcome line.
    pub async fn reload(&self, template: &str) -> String {
        let before = self.reload_outcomes();
        self.write_config(template);
        self.signal("HUP");
        eventually(DEADLINE, "reload outcome", || async {
            (self.reload_outcomes() > before).then(|| self.log())
        })
        .await
    }

    fn reload_outcomes(&self) -> usize {
        let log = self.log();
        log.matches("configuration reloaded from").count()
            + log.matches("configuration reload failed").count()
    }

    pub async fn metrics(&self) -> String {
        request(self.admin_port, "GET", Some("admin"), "/metrics", &[])
            .await
            .expect("GET /metrics")
            .body
    }

    /// Wait for the process to exit (or panic after `deadline`).
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(
                start.elapsed() < deadline,
                "edgeward did not exit in {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Edgeward {
    /// A graceful stop, so that the programs it supervises stop too; SIGKILL
    /// if it takes more than a few seconds.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-INT")
                .arg(c.id().to_string())
                .status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run `edgeward check -c <file with text>`; returns (exit code, stdout+stderr).
pub fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgeward.yaml");
    std::fs::write(&path, text).unwrap();
    check_path(&path)
}

pub fn check_path(path: &Path) -> (i32, String) {
    let out = Command::new(binary())
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("run edgeward check");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
