//! Process assembly: the Pingora server, its listeners, and our signals.
//! `HUP` reloads, `USR1` reopens logs, `TERM`/`QUIT` stop gracefully within
//! `grace_period`, `INT` stops at once.

use crate::admin::AdminApp;
use crate::live::{InFlight, Live};
use crate::proxy::EdgeProxy;
use crate::sites::Config;
use async_trait::async_trait;
use log::{error, info, warn};
use pingora::apps::HttpServerOptions;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};

/// Write buffer of a client connection. Writes that fit are copied into it;
/// one that does not leaves together with what is buffered in one `writev`
/// (vendored pingora-core's `WriteBuffer`), as nginx sends a header and its
/// body. So a response's header and a body larger than this leave in one
/// system call without the body being copied, and small responses leave in
/// one `send` when complete. Pingora's default, 1460 bytes, would write a
/// large header of a small response apart. Only bodies of known length are
/// buffered (flushed when complete); chunked and close-delimited bodies are
/// flushed at every write.
const CLIENT_WRITE_BUFFER: usize = 4 * 1024;

/// Whether `addr` can be bound (as Pingora will, with `SO_REUSEADDR`). Bound
/// only, never listening: a listening socket closed again would reset the
/// connections a client made to it meanwhile.
fn can_bind(addr: &str) -> std::io::Result<()> {
    for a in addr.to_socket_addrs()? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(a)?;
    }
    Ok(())
}

/// Why edgeward could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("signal runtime: {0}")]
    SignalRuntime(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    SignalHandlers(std::io::Error),
    #[error("cannot start the signal thread: {0}")]
    SignalThread(std::io::Error),
    #[error("the signal thread died")]
    SignalThreadDied,
    #[error("TLS settings: {0}")]
    Tls(Box<pingora::Error>),
}

/// Start serving `config` (loaded from `path`) until a stop signal.
pub(crate) fn run(path: PathBuf, config: Config) -> Result<(), StartError> {
    // Fail with a clear message when an address is taken, before Pingora
    // starts its runtimes.
    for addr in config
        .listen
        .iter()
        .chain(config.tls.listen.iter())
        .chain(config.admin_listen.iter())
    {
        can_bind(addr).map_err(|source| StartError::Listen {
            addr: addr.clone(),
            source,
        })?;
    }
    crate::metrics::init();

    let grace = config.grace_period;
    let conf = ServerConf {
        threads: config.threads,
        // Each worker thread runs its own single-threaded runtime, like an
        // nginx worker: a connection stays on the thread that accepted it
        // (Pingora spreads new connections over the threads at random).
        // Without the work-stealing scheduler's cross-thread queues and
        // wake-ups a proxied request takes about 8 % less CPU (bench/cost.sh
        // native runs, bench/README.md round 4); blocking work was already
        // kept off these threads (WAF engine, log writer, ACME, reloads).
        work_stealing: false,
        grace_period_seconds: Some(grace.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let listen = config.listen.clone();
    let tls_listen = config.tls.listen.clone();
    let admin_listen = config.admin_listen.clone();
    let sites = config.sites.len();
    // The first bytes of a new plain connection (h2c preface or HTTP/1
    // request) within limits.header_timeout, else it is closed; as the
    // server options are set once, a reload does not change it.
    let first_bytes = config.limits.header_timeout;
    crate::supervisor::SUPERVISOR.apply(&config.supervisor, config.programs());
    // ACME orders wait until the plain listeners accept (the CA's HTTP-01
    // validation must reach them).
    crate::tls::acme::open_when_listening(listen.clone());
    let live = Arc::new(Live::new(path, config));

    let mut app = pingora::proxy::http_proxy(&server.configuration, EdgeProxy::new(live.clone()));
    let mut opts = HttpServerOptions::default();
    opts.h2c = true;
    opts.h2c_preface_timeout = Some(first_bytes);
    // Request header names are not kept in the client's case: written to the
    // upstream in title case (`User-Agent`, `X-Custom`); each field then costs
    // one header map, not two (vendor/README.md).
    opts.drop_h1_request_header_case = true;
    app.server_options = Some(opts);
    // Behind limits.max_connections.
    let mut proxy = Service::new(
        "edgeward proxy".to_string(),
        crate::limits::connections::Limited::new(app),
    );
    for addr in &listen {
        proxy.add_listener(
            ListenerConfig::tcp(addr.as_str())
                .l4_buffer(L4BufferSettings::default().write(CLIENT_WRITE_BUFFER)),
        );
    }
    for addr in &tls_listen {
        let mut settings = TlsSettings::with_callbacks(Box::new(crate::tls::CertSelector))
            .map_err(StartError::Tls)?;
        settings.enable_h2();
        settings.set_servername_callback(crate::tls::check_server_name);
        crate::tls::configure(&mut settings);
        proxy.add_listener(
            ListenerConfig::tcp(addr.as_str())
                .tls(settings)
                .l4_buffer(L4BufferSettings::default().write(CLIENT_WRITE_BUFFER)),
        );
    }
    server.add_service(proxy);

    if let Some(addr) = &admin_listen {
        let mut admin = Service::new(
            "edgeward admin".to_string(),
            HttpServer::new_app(AdminApp::new(live.clone())),
        );
        admin.threads = Some(1);
        admin.add_tcp(addr);
        server.add_service(admin);
    }

    start_signal_thread(live.clone())?;
    info!(
        "edgeward {} serving {sites} site(s) on {}{}{}",
        env!("CARGO_PKG_VERSION"),
        listen.join(", "),
        if tls_listen.is_empty() {
            String::new()
        } else {
            format!("; HTTPS on {}", tls_listen.join(", "))
        },
        admin_listen
            .map(|a| format!("; admin on {a}"))
            .unwrap_or_default()
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(StopSignals { grace }),
    });
    crate::supervisor::SUPERVISOR.shutdown(Duration::from_secs(1), true);
    crate::logs::flush(Duration::from_secs(2));
    info!("edgeward stopped");
    Ok(())
}

/// HUP and USR1, handled on a thread of their own so a reload (file read,
/// DNS, validation) never runs on a proxy worker thread.
fn start_signal_thread(live: Arc<Live>) -> Result<(), StartError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), StartError>>();
    std::thread::Builder::new()
        .name("edgeward-signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(StartError::SignalRuntime(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let (mut hup, mut usr1) = match (
                    signal(SignalKind::hangup()),
                    signal(SignalKind::user_defined1()),
                ) {
                    (Ok(h), Ok(u)) => (h, u),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = ready_tx.send(Err(StartError::SignalHandlers(e)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    tokio::select! {
                        Some(()) = hup.recv() => {
                            info!("SIGHUP: reloading the configuration");
                            let live = live.clone();
                            let _ = tokio::task::spawn_blocking(move || live.reload()).await;
                        }
                        Some(()) = usr1.recv() => {
                            info!("SIGUSR1: reopening log files");
                            crate::logs::reopen();
                        }
                        else => break,
                    }
                }
            });
        })
        .map_err(StartError::SignalThread)?;
    ready_rx.recv().map_err(|_| StartError::SignalThreadDied)?
}

/// Our stop signals for Pingora's main loop.
struct StopSignals {
    grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for StopSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (mut term, mut quit, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::quit()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(q), Ok(i)) => (t, q, i),
            _ => {
                error!("cannot install stop signal handlers; stopping");
                return ShutdownSignal::FastShutdown;
            }
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = quit.recv() => "SIGQUIT",
            _ = int.recv() => {
                info!("SIGINT: stopping now");
                exit_if_still_running(Instant::now() + STOP_MARGIN);
                return ShutdownSignal::FastShutdown;
            }
        };
        info!(
            "{name}: graceful stop; no new connections, {} request(s) in flight, up to {:?}",
            InFlight::count(),
            self.grace
        );
        drain_then_exit(self.grace);
        ShutdownSignal::GracefulTerminate
    }
}

/// How long after its deadline a stop may take before edgeward exits by
/// itself: Pingora joins each worker thread when it shuts the runtimes
/// down, and a thread busy in a task that does not yield would hold the
/// process forever.
const STOP_MARGIN: Duration = Duration::from_secs(2);

/// Stop the tenants' programs (within `programs`; `force`: SIGKILL at the
/// end), flush the logs and exit.
fn stop_programs_and_exit(programs: Duration, force: bool) -> ! {
    crate::supervisor::SUPERVISOR.shutdown(programs, force);
    crate::logs::flush(Duration::from_secs(2));
    std::process::exit(0)
}

/// The end of a stop whatever the runtimes do (see `STOP_MARGIN`), if the
/// process is still there at `at`: Pingora's own stop returns from
/// `Server::run`, and the process ends, well before in the normal case.
fn exit_if_still_running(at: Instant) {
    let _ = std::thread::Builder::new()
        .name("edgeward-stop".into())
        .spawn(move || exit_at(at));
}

/// Sleeps until `at`, then ends the process: the worker threads did not stop.
fn exit_at(at: Instant) -> ! {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
    warn!("the worker threads did not stop in time; exiting");
    stop_programs_and_exit(Duration::from_secs(1), true)
}

/// Pingora waits the whole grace period even when nothing is left to do.
/// Exit as soon as every in-flight request has finished. Pingora's own
/// timer still ends the process at the deadline (its runtimes get one more
/// second, `graceful_shutdown_timeout_seconds`); if it has not `STOP_MARGIN`
/// after that, this thread does.
fn drain_then_exit(grace: Duration) {
    let deadline = Instant::now() + grace;
    let _ = std::thread::Builder::new()
        .name("edgeward-drain".into())
        .spawn(move || {
            // Give the listeners a moment to close so no request slips in
            // between the check and the exit.
            std::thread::sleep(Duration::from_millis(50));
            while Instant::now() < deadline {
                if InFlight::count() <= 0 {
                    info!("all requests finished; edgeward stopped");
                    let left = deadline.saturating_duration_since(Instant::now());
                    stop_programs_and_exit(left.max(Duration::from_secs(1)), false);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            exit_at(deadline + Duration::from_secs(1) + STOP_MARGIN);
        });
}
