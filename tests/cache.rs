//! The HTTP cache through the real binary: a scriptable origin, real Redis
//! (`redis-server` spawned on an ephemeral port), both storages through the
//! same cases (`both!`).

mod common;
use common::*;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Storage {
    Memory,
    /// Redis with its near cache (the default `local_size`).
    Redis,
    /// Redis, every lookup a round trip (`local_size: 0`).
    RedisDirect,
}

/// Four sites of account alice on one origin: blog (cache on), shop (cache
/// on, `ttl: 1s`), images (cache on, text only, Set-Cookie stored), plain
/// (no cache); the global cache section on `storage`, plus `extra_cache`.
fn config(origin: &str, storage: Storage, redis: Option<&RedisServer>, timeout: &str) -> Conf {
    let conf = match redis {
        None => Conf::new().cache("storage", "memory"),
        Some(r) => {
            let local = if storage == Storage::RedisDirect {
                ", local_size: 0"
            } else {
                ""
            };
            Conf::new().cache("storage", "redis").cache(
                "redis",
                &format!(
                    "{{ url: {}, key_prefix: \"t:\", timeout: {timeout}{local} }}",
                    quote(&r.url())
                ),
            )
        }
    };
    conf.site("blog", |s| {
        s.address("blog.test")
            .upstream(origin)
            .cache("enabled: true")
    })
    .site("shop", |s| {
        s.address("shop.test")
            .upstream(origin)
            .cache("enabled: true, ttl: 1s")
    })
    .site("images", |s| {
        s.address("img.test")
            .upstream(origin)
            .cache("enabled: true, content_types: [\"text/*\"], store_set_cookie: true")
    })
    .site("plain", |s| s.address("plain.test").upstream(origin))
}

struct World {
    origin: Origin,
    ew: Edgeward,
    redis: Option<RedisServer>,
}

/// `cache.redis.timeout` of the tests: generous, so that a loaded CI
/// machine (every test binary in parallel on two cores) does not turn Redis
/// hits into misses; the slow-Redis test sets its own.
const REDIS_TIMEOUT: &str = "1s";

/// A world with these lines added to the global `cache:` section.
async fn world_with(storage: Storage, extra_cache: &[(&str, &str)]) -> World {
    world_redis_timeout(storage, extra_cache, REDIS_TIMEOUT).await
}

async fn world_redis_timeout(
    storage: Storage,
    extra_cache: &[(&str, &str)],
    timeout: &str,
) -> World {
    let origin = Origin::start().await;
    let redis = match storage {
        Storage::Memory => None,
        Storage::Redis | Storage::RedisDirect => Some(RedisServer::start().await),
    };
    let mut conf = config(&origin.address(), storage, redis.as_ref(), timeout);
    for (k, v) in extra_cache {
        conf = conf.cache(k, v);
    }
    let ew = Edgeward::start(&conf).await;
    World { origin, ew, redis }
}

async fn world(storage: Storage) -> World {
    world_with(storage, &[]).await
}

impl World {
    /// With Redis and its near cache, wait until blog.test's `path`, stored
    /// already, is answered from the near cache (a hit read from Redis is
    /// kept near unless an invalidation, such as the one its own storing
    /// sends, crosses it): the plain hits that follow are answered there,
    /// as they are from the memory storage.
    async fn held_near(&self, storage: Storage, path: &str) {
        if storage != Storage::Redis {
            return;
        }
        eventually(DEADLINE, &format!("{path} held near"), || async {
            let before = local_hits(&self.ew.metrics().await);
            assert!(is_hit(&self.get("blog.test", path).await));
            (local_hits(&self.ew.metrics().await) > before).then_some(())
        })
        .await;
    }

    async fn get(&self, host: &str, path: &str) -> Reply {
        self.req("GET", host, path, &[]).await
    }

    async fn req(&self, method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.ew.port, method, Some(host), path, headers)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{method} {host}{path}: {e}\nedgeward log:\n{}",
                    self.ew.log()
                )
            })
    }

    /// Wait until one second of cache time has passed for every entry
    /// stored before this call: an entry stored now with `max-age=1` is
    /// polled until it is fetched again, i.e. until it has gone stale. Any
    /// entry stored earlier with a freshness of 1 s is stale by then too.
    /// (A clock made of the cache itself, instead of a sleep.)
    async fn one_second_later(&self, clock: &str) {
        self.origin
            .set(clock, 200, &[("cache-control", "max-age=1")]);
        let first = format!("{clock} #1");
        assert_eq!(self.get("blog.test", clock).await.body, first);
        eventually(DEADLINE, &format!("{clock} stale"), || async {
            (self.get("blog.test", clock).await.body != first).then_some(())
        })
        .await;
    }
}

fn cache_status(r: &Reply) -> &str {
    r.header("cache-status").unwrap_or("")
}

fn is_hit(r: &Reply) -> bool {
    cache_status(r).starts_with("edgeward; hit")
}

/// Run a case once per storage.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn memory() {
                    super::$name(super::Storage::Memory).await
                }
                #[tokio::test(flavor = "multi_thread")]
                async fn redis() {
                    super::$name(super::Storage::Redis).await
                }
                #[tokio::test(flavor = "multi_thread")]
                async fn redis_direct() {
                    super::$name(super::Storage::RedisDirect).await
                }
            }
        )*
    };
}

both!(
    miss_then_hit_with_age,
    expiry_and_site_ttl,
    revalidation_304_updates_meta,
    vary_variants,
    request_directives,
    stale_while_revalidate,
    invalidation_after_post,
    purge_modes,
    tenant_isolation,
    not_stored_list,
    cache_lock_prevents_stampede,
    large_objects_stream_uncached,
    range_requests,
    plain_and_directive_hits_agree,
    plain_hit_heads_match_on_the_wire,
    access_log_fields_of_plain_hits,
    plain_hits_over_h2c,
);

// ------------------------------------------------------------------- cases

async fn miss_then_hit_with_age(storage: Storage) {
    let w = world(storage).await;
    w.origin.set("/a", 200, &[("cache-control", "max-age=60")]);
    let r1 = w.get("blog.test", "/a").await;
    assert_eq!(r1.status, 200);
    assert_eq!(r1.body, "/a #1");
    assert_eq!(cache_status(&r1), "edgeward; fwd=miss; stored");
    let r2 = w.get("blog.test", "/a").await;
    assert_eq!(r2.body, "/a #1", "served from the cache");
    assert_eq!(cache_status(&r2), "edgeward; hit");
    assert!(r2.header("age").is_some_and(|a| a.parse::<u64>().is_ok()));
    assert!(r2.header("x-request-id").is_some());
    assert_eq!(w.origin.hits("/a"), 1);
    // HEAD is answered from the stored GET.
    let h = w.req("HEAD", "blog.test", "/a", &[]).await;
    assert_eq!(h.status, 200);
    assert!(is_hit(&h), "{:?}", h.headers);
    // The upstream's Age counts: max-age=60 with Age: 100 is already stale.
    w.origin.set(
        "/aged",
        200,
        &[("cache-control", "max-age=60"), ("age", "100")],
    );
    w.get("blog.test", "/aged").await;
    let r = w.get("blog.test", "/aged").await;
    assert_eq!(r.body, "/aged #2", "stale on arrival: {:?}", r.headers);
    // Sites without the cache get no Cache-Status and always the origin.
    let p1 = w.get("plain.test", "/a").await;
    let p2 = w.get("plain.test", "/a").await;
    assert!(p1.header("cache-status").is_none());
    assert_ne!(p1.body, p2.body);
    let m = w.ew.metrics().await;
    assert!(
        m.contains("edgeward_cache_requests_total{result=\"hit\",site=\"alice/blog\"}"),
        "{m}"
    );
}

/// The fields of a reply in order, without those that differ between two
/// answers of the same stored response (Date, the request id, Age).
fn stable_fields(r: &Reply) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id" | "age"))
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect()
}

/// A plain GET/HEAD of a fresh entry is answered without pingora-cache's
/// state machine; one with a request directive that changes nothing
/// (`max-stale=0` on a fresh entry) goes through it. Both must give the same
/// response: status, the same fields in the same order, Age, body.
async fn plain_and_directive_hits_agree(storage: Storage) {
    let w = world(storage).await;
    for (path, status) in [("/same", 200), ("/gone", 404)] {
        w.origin.set(
            path,
            status,
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"e1\""),
                ("cache-status", "origin; fwd=uri-miss"),
            ],
        );
        let first = w.get("blog.test", path).await;
        assert_eq!(
            cache_status(&first),
            "edgeward; fwd=miss; stored, origin; fwd=uri-miss"
        );
        w.held_near(storage, path).await;
        for method in ["GET", "HEAD"] {
            let id = format!("plain-{method}-{status}");
            let plain = w
                .req(method, "blog.test", path, &[("x-request-id", id.as_str())])
                .await;
            let full = w
                .req(
                    method,
                    "blog.test",
                    path,
                    &[("cache-control", "max-stale=0")],
                )
                .await;
            assert!(
                is_hit(&plain) && is_hit(&full),
                "{method} {path}: {:?} / {:?}",
                plain.headers,
                full.headers
            );
            assert_eq!(plain.status, status);
            assert_eq!(full.status, status);
            assert_eq!(
                stable_fields(&plain),
                stable_fields(&full),
                "{method} {path}"
            );
            assert_eq!(plain.body, full.body, "{method} {path}");
            let body = if method == "GET" {
                format!("{path} #1")
            } else {
                String::new()
            };
            assert_eq!(plain.body, body, "{method} {path}");
            let age = |r: &Reply| r.header("age").and_then(|a| a.parse::<u64>().ok());
            let (a, b) = (age(&plain), age(&full));
            assert!(
                a.zip(b).is_some_and(|(a, b)| a.abs_diff(b) <= 1),
                "{method} {path}: Age {a:?} / {b:?}"
            );
            // Each answer carries its own request id.
            assert_eq!(plain.header("x-request-id"), Some(id.as_str()));
            assert!(full.header("x-request-id").is_some_and(|f| f != id));
        }
    }
    assert_eq!(w.origin.hits("/same"), 1);
    assert_eq!(w.origin.hits("/gone"), 1);
}

/// Send `request` on `s` and read one response: its head as sent (bytes)
/// and its body, framed by its `Content-Length` (absent for HEAD).
async fn head_and_body(
    s: &mut tokio::net::TcpStream,
    request: &str,
    head_request: bool,
) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(request.as_bytes()).await.expect("write");
    let buf = read_head(s).await.expect("a response head");
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(buf[..end].to_vec()).expect("ASCII head");
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.parse::<usize>().expect("a length"));
    let mut body = buf[end..].to_vec();
    let want = if head_request { 0 } else { length };
    while body.len() < want {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut chunk))
            .await
            .expect("body in time")
            .expect("read");
        assert!(n > 0, "closed inside the body: {head}");
        body.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(body.len(), want, "no bytes past the body: {head}");
    (head, body)
}

/// The lines of a head that two answers of one stored response share: all
/// but `Date`, `Age` and `X-Request-Id`, as written (case and order).
fn shared_lines(head: &str) -> Vec<&str> {
    head.lines()
        .filter(|l| {
            !["Date: ", "Age: ", "X-Request-Id: "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect()
}

/// A plain hit's head is written from fields serialized once per stored
/// entry; one through pingora-cache (a request directive) is serialized on
/// the spot. On the wire they must be the same, byte for byte, apart from
/// the per-answer fields, which each appear once; and the body must be
/// framed so that the connection carries the next request.
async fn plain_hit_heads_match_on_the_wire(storage: Storage) {
    let w = world(storage).await;
    w.origin.set(
        "/wire",
        200,
        &[
            ("cache-control", "max-age=60"),
            ("etag", "\"w1\""),
            ("x-origin-note", "kept as sent"),
        ],
    );
    assert_eq!(
        cache_status(&w.get("blog.test", "/wire").await),
        "edgeward; fwd=miss; stored"
    );
    w.held_near(storage, "/wire").await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", w.ew.port))
        .await
        .expect("connect");
    let plain = |method: &str, id: &str| {
        format!("{method} /wire HTTP/1.1\r\nHost: blog.test\r\nX-Request-Id: {id}\r\n\r\n")
    };
    let (fast, fast_body) = head_and_body(&mut s, &plain("GET", "wire-1"), false).await;
    let (full, full_body) = head_and_body(
        &mut s,
        "GET /wire HTTP/1.1\r\nHost: blog.test\r\nCache-Control: max-stale=0\r\n\r\n",
        false,
    )
    .await;
    let (head, head_body) = head_and_body(&mut s, &plain("HEAD", "wire-2"), true).await;
    // The same connection still frames a fourth answer right.
    let (again, again_body) = head_and_body(&mut s, &plain("GET", "wire-3"), false).await;
    for h in [&fast, &full, &head, &again] {
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
        assert!(h.contains("Cache-Status: edgeward; hit\r\n"), "{h}");
        assert!(h.contains("X-Origin-Note: kept as sent\r\n"), "{h}");
        assert!(h.contains("Connection: keep-alive\r\n"), "{h}");
        for once in [
            "Date: ",
            "Age: ",
            "X-Request-Id: ",
            "Content-Length: ",
            "Connection: ",
        ] {
            assert_eq!(
                h.lines().filter(|l| l.starts_with(once)).count(),
                1,
                "one {once:?} in {h}"
            );
        }
    }
    assert_eq!(shared_lines(&fast), shared_lines(&full), "{fast}\n{full}");
    assert_eq!(shared_lines(&head), shared_lines(&full), "{head}\n{full}");
    assert!(fast.contains("X-Request-Id: wire-1\r\n"), "{fast}");
    assert!(head.contains("X-Request-Id: wire-2\r\n"), "{head}");
    assert!(again.contains("X-Request-Id: wire-3\r\n"), "{again}");
    for body in [&fast_body, &full_body, &again_body] {
        assert_eq!(body.as_slice(), b"/wire #1");
    }
    assert!(head_body.is_empty());
    assert_eq!(w.origin.hits("/wire"), 1);
}

/// Over HTTP/2 a plain hit is written from the whole stored header (the
/// serialized fields are HTTP/1's), with the same fields as over HTTP/1.
async fn plain_hits_over_h2c(storage: Storage) {
    let w = world(storage).await;
    w.origin.set(
        "/h2",
        200,
        &[
            ("cache-control", "max-age=60"),
            ("x-origin-note", "kept as sent"),
        ],
    );
    w.get("blog.test", "/h2").await;
    w.held_near(storage, "/h2").await;
    let h1 = w.get("blog.test", "/h2").await;
    let h2 = get_h2c(w.ew.port, "blog.test", "/h2").await.unwrap();
    for r in [&h1, &h2] {
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "/h2 #1");
        assert!(is_hit(r), "{:?}", r.headers);
        for name in [
            "age",
            "x-request-id",
            "date",
            "x-origin-note",
            "content-length",
        ] {
            assert_eq!(
                r.headers.get_all(name).iter().count(),
                1,
                "{name}: {:?}",
                r.headers
            );
        }
    }
    assert!(h2.header("connection").is_none(), "{:?}", h2.headers);
    let without = |r: &Reply| {
        stable_fields(r)
            .into_iter()
            .filter(|(k, _)| k != "connection")
            .collect::<Vec<_>>()
    };
    assert_eq!(without(&h1), without(&h2));
    assert_eq!(w.origin.hits("/h2"), 1);
}

/// The line of the access log at `path` that starts with status 200 and
/// request id `id`, once written.
async fn logged_line(path: &std::path::Path, id: &str) -> String {
    let start = format!("200 {id} ");
    eventually(DEADLINE, &format!("the line of {id}"), || async {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with(&start))
            .map(str::to_string)
    })
    .await
}

/// A plain hit hands Pingora a header with only what the site's access log
/// shows (and the framing); what the log shows must be what the client
/// got, as for a hit through pingora-cache.
async fn access_log_fields_of_plain_hits(storage: Storage) {
    let origin = Origin::start().await;
    let redis = match storage {
        Storage::Memory => None,
        Storage::Redis | Storage::RedisDirect => Some(RedisServer::start().await),
    };
    let format = "{status} {request_id} [{response_header:cache-status}] \
                  [{response_header:x-request-id}] [{response_header:content-type}] \
                  [{response_header:x-origin-note}] [{response_header:content-length}] \
                  [{response_header:connection}] [{response_header:x-absent}] \
                  [{response_header:age}] [{response_header:date}]";
    let conf = config(&origin.address(), storage, redis.as_ref(), REDIS_TIMEOUT)
        .edit_site("blog", |s| {
            s.access_log(&format!("format: {}", quote(format)))
        });
    let ew = Edgeward::start(&conf).await;
    let w = World { origin, ew, redis };
    w.origin.set(
        "/logged",
        200,
        &[
            ("cache-control", "max-age=60"),
            ("x-origin-note", "kept as sent"),
        ],
    );
    w.get("blog.test", "/logged").await;
    w.held_near(storage, "/logged").await;
    let plain = w
        .req(
            "GET",
            "blog.test",
            "/logged",
            &[("x-request-id", "logged-1")],
        )
        .await;
    let full = w
        .req(
            "GET",
            "blog.test",
            "/logged",
            &[
                ("x-request-id", "logged-2"),
                ("cache-control", "max-stale=0"),
            ],
        )
        .await;
    assert!(is_hit(&plain) && is_hit(&full), "{:?}", plain.headers);
    let path = w.ew.dir.path().join("alice/http/blog.log");
    for (line, r, id) in [
        (logged_line(&path, "logged-1").await, &plain, "logged-1"),
        (logged_line(&path, "logged-2").await, &full, "logged-2"),
    ] {
        let age = r.header("age").unwrap();
        let date = r.header("date").unwrap();
        assert_eq!(
            *line,
            format!(
                "200 {id} [edgeward; hit] [{id}] [text/plain] [kept as sent] [{}] \
                 [keep-alive] [-] [{age}] [{date}]",
                "/logged #1".len()
            ),
        );
    }
}

async fn expiry_and_site_ttl(storage: Storage) {
    let w = world(storage).await;
    w.origin.set("/e", 200, &[("cache-control", "max-age=1")]);
    assert_eq!(w.get("blog.test", "/e").await.body, "/e #1");
    assert_eq!(w.get("blog.test", "/e").await.body, "/e #1");
    let r = eventually(DEADLINE, "entry expires", || async {
        let r = w.get("blog.test", "/e").await;
        (r.body != "/e #1").then_some(r)
    })
    .await;
    assert_eq!(r.body, "/e #2");
    assert!(
        cache_status(&r).contains("fwd=stale"),
        "{}",
        cache_status(&r)
    );
    // shop.test has ttl: 1s for responses without freshness of their own.
    w.origin.set("/t", 200, &[]);
    assert_eq!(w.get("shop.test", "/t").await.body, "/t #1");
    assert_eq!(w.get("shop.test", "/t").await.body, "/t #1");
    eventually(DEADLINE, "ttl expires", || async {
        (w.get("shop.test", "/t").await.body == "/t #2").then_some(())
    })
    .await;
    // ... but the origin's own freshness wins over the site's ttl.
    w.origin
        .set("/t2", 200, &[("cache-control", "max-age=3600")]);
    w.get("shop.test", "/t2").await;
    w.one_second_later("/t2-clock").await; // past the site's ttl
    assert_eq!(w.get("shop.test", "/t2").await.body, "/t2 #1");
    // blog.test has no ttl: no freshness and no validator = not stored.
    w.origin.set("/none", 200, &[]);
    w.get("blog.test", "/none").await;
    assert_eq!(w.get("blog.test", "/none").await.body, "/none #2");
}

async fn revalidation_304_updates_meta(storage: Storage) {
    let w = world(storage).await;
    w.origin.set(
        "/r",
        200,
        &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
    );
    assert_eq!(w.get("blog.test", "/r").await.body, "/r #1");
    // From now on the origin says: fresh for an hour.
    w.origin.set(
        "/r",
        200,
        &[("cache-control", "max-age=3600"), ("etag", "\"v1\"")],
    );
    let r = eventually(DEADLINE, "revalidation", || async {
        let r = w.get("blog.test", "/r").await;
        cache_status(&r).contains("fwd-status=304").then_some(r)
    })
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "/r #1", "the stored body, validated");
    assert_eq!(
        w.origin.last_headers("/r").get("if-none-match").unwrap(),
        "\"v1\""
    );
    assert_eq!(w.origin.hits("/r"), 2);
    // The 304's max-age=3600 was stored: fresh hits, the origin rests.
    w.one_second_later("/r-clock").await; // past the old max-age
    let r = w.get("blog.test", "/r").await;
    assert_eq!(cache_status(&r), "edgeward; hit");
    assert!(r.header("cache-control").unwrap().contains("3600"));
    assert_eq!(w.origin.hits("/r"), 2);
}

async fn vary_variants(storage: Storage) {
    let w = world(storage).await;
    w.origin.set(
        "/v",
        200,
        &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
    );
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    assert_eq!(w.req("GET", "blog.test", "/v", &en).await.body, "/v #1");
    assert_eq!(w.req("GET", "blog.test", "/v", &fr).await.body, "/v #2");
    let r = w.req("GET", "blog.test", "/v", &en).await;
    assert_eq!((r.body.as_str(), is_hit(&r)), ("/v #1", true));
    let r = w.req("GET", "blog.test", "/v", &fr).await;
    assert_eq!((r.body.as_str(), is_hit(&r)), ("/v #2", true));
    assert_eq!(w.req("GET", "blog.test", "/v", &[]).await.body, "/v #3");
    // PURGE of the URL removes every variant.
    let p = w.req("PURGE", "blog.test", "/v", &[]).await;
    assert_eq!((p.status, p.body.as_str()), (200, "3 entries purged\n"));
    assert_eq!(w.req("GET", "blog.test", "/v", &en).await.body, "/v #4");
}

async fn request_directives(storage: Storage) {
    let w = world(storage).await;
    w.origin.set("/d", 200, &[("cache-control", "max-age=60")]);
    assert_eq!(w.get("blog.test", "/d").await.body, "/d #1");
    let nc = w
        .req("GET", "blog.test", "/d", &[("cache-control", "no-cache")])
        .await;
    assert_eq!(nc.body, "/d #2");
    assert!(
        cache_status(&nc).contains("fwd=request"),
        "{}",
        cache_status(&nc)
    );
    assert_eq!(w.get("blog.test", "/d").await.body, "/d #2", "stored again");
    let p = w
        .req("GET", "blog.test", "/d", &[("pragma", "no-cache")])
        .await;
    assert_eq!(p.body, "/d #3");
    let ma = w
        .req("GET", "blog.test", "/d", &[("cache-control", "max-age=0")])
        .await;
    assert_eq!(ma.body, "/d #4");
    let ma = w
        .req("GET", "blog.test", "/d", &[("cache-control", "max-age=30")])
        .await;
    assert_eq!(ma.body, "/d #4", "young enough");
    let mf = w
        .req(
            "GET",
            "blog.test",
            "/d",
            &[("cache-control", "min-fresh=3600")],
        )
        .await;
    assert_eq!(mf.body, "/d #5");
    let oic = w
        .req(
            "GET",
            "blog.test",
            "/d",
            &[("cache-control", "only-if-cached")],
        )
        .await;
    assert_eq!((oic.status, oic.body.as_str()), (200, "/d #5"));
    let hits = w.origin.hits("/nothing");
    let oic = w
        .req(
            "GET",
            "blog.test",
            "/nothing",
            &[("cache-control", "only-if-cached")],
        )
        .await;
    assert_eq!(oic.status, 504);
    assert_eq!(w.origin.hits("/nothing"), hits, "never reached the origin");
    // max-stale accepts a stale entry.
    w.origin.set("/s", 200, &[("cache-control", "max-age=1")]);
    w.get("blog.test", "/s").await;
    w.one_second_later("/s-clock").await; // /s is stale
    let r = w
        .req(
            "GET",
            "blog.test",
            "/s",
            &[("cache-control", "max-stale=600")],
        )
        .await;
    assert_eq!(r.body, "/s #1");
    // ... and it was stale: without max-stale it is fetched again.
    assert_eq!(w.get("blog.test", "/s").await.body, "/s #2");
    // request no-store: answered, not stored
    w.req("GET", "blog.test", "/ns", &[("cache-control", "no-store")])
        .await;
    assert_eq!(w.get("blog.test", "/ns").await.body, "/ns #2");
}

async fn stale_while_revalidate(storage: Storage) {
    let w = world(storage).await;
    w.origin.set(
        "/swr",
        200,
        &[("cache-control", "max-age=1, stale-while-revalidate=60")],
    );
    assert_eq!(w.get("blog.test", "/swr").await.body, "/swr #1");
    let stale = eventually(DEADLINE, "served stale while revalidating", || async {
        let r = w.get("blog.test", "/swr").await;
        cache_status(&r)
            .contains("stale-while-revalidate")
            .then_some(r)
    })
    .await;
    assert_eq!(stale.body, "/swr #1", "the stale body, at once");
    // The background refresh stores the new response.
    eventually(DEADLINE, "background refresh", || async {
        let r = w.get("blog.test", "/swr").await;
        (r.body == "/swr #2" && is_hit(&r)).then_some(())
    })
    .await;
    // stale-if-error: the origin fails, the stale entry is served.
    w.origin.set(
        "/sie",
        200,
        &[("cache-control", "max-age=1, stale-if-error=60")],
    );
    w.get("blog.test", "/sie").await;
    w.origin.set("/sie", 500, &[("cache-control", "no-store")]);
    // Fresh hits until it goes stale, then the stale entry on the error.
    eventually(DEADLINE, "stale served on the origin's error", || async {
        let r = w.get("blog.test", "/sie").await;
        assert_eq!((r.status, r.body.as_str()), (200, "/sie #1"));
        cache_status(&r)
            .contains("detail=stale-if-error")
            .then_some(())
    })
    .await;
    assert!(w.origin.hits("/sie") >= 2, "the origin was asked");
}

async fn invalidation_after_post(storage: Storage) {
    let w = world(storage).await;
    w.origin.set("/p", 200, &[("cache-control", "max-age=60")]);
    w.origin
        .set("/other", 200, &[("cache-control", "max-age=60")]);
    w.origin
        .set("/elsewhere", 200, &[("cache-control", "max-age=60")]);
    assert_eq!(w.get("blog.test", "/p").await.body, "/p #1");
    assert_eq!(w.get("blog.test", "/other").await.body, "/other #1");
    assert_eq!(w.get("blog.test", "/elsewhere").await.body, "/elsewhere #1");
    let post = w.req("POST", "blog.test", "/p", &[]).await;
    assert_eq!(post.status, 200);
    assert_eq!(w.get("blog.test", "/p").await.body, "/p #3");
    // Location on the same host is invalidated too; another host's is not.
    w.origin.set(
        "/form",
        201,
        &[
            ("location", "/other"),
            ("content-location", "http://evil.test/elsewhere"),
        ],
    );
    w.req("POST", "blog.test", "/form", &[]).await;
    assert_eq!(w.get("blog.test", "/other").await.body, "/other #2");
    assert_eq!(w.get("blog.test", "/elsewhere").await.body, "/elsewhere #1");
    // A failed unsafe request invalidates nothing.
    w.origin.set("/fail", 500, &[]);
    w.get("blog.test", "/elsewhere").await;
    w.origin.set("/elsewhere", 500, &[]);
    w.req("DELETE", "blog.test", "/elsewhere", &[]).await;
    assert_eq!(w.get("blog.test", "/elsewhere").await.body, "/elsewhere #1");
}

async fn purge_modes(storage: Storage) {
    let w = world(storage).await;
    for p in ["/p/a", "/p/b", "/p/c.css", "/q", "/q?x=1"] {
        w.get("blog.test", p).await;
        assert!(is_hit(&w.get("blog.test", p).await), "{p} cached");
    }
    let before: usize = ["/p/a", "/p/b", "/q"]
        .iter()
        .map(|p| w.origin.hits(p))
        .sum();
    let r = w.req("PURGE", "blog.test", "/p/a", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "1 entry purged\n"));
    let r = w.req("PURGE", "blog.test", "/p/a", &[]).await;
    assert_eq!(r.status, 404, "nothing left to purge");
    let wild = [("x-cache-purge-match", "wildcard")];
    let r = w.req("PURGE", "blog.test", "/p/*.css", &wild).await;
    assert_eq!((r.status, r.body.as_str()), (200, "1 entry purged\n"));
    let sw = [("x-cache-purge-match", "startswith")];
    let r = w.req("PURGE", "blog.test", "/q", &sw).await;
    assert_eq!((r.status, r.body.as_str()), (200, "2 entries purged\n"));
    assert!(is_hit(&w.get("blog.test", "/p/b").await), "/p/b untouched");
    let r = w
        .req("PURGE", "blog.test", "http://blog.test/*", &wild)
        .await;
    assert_eq!((r.status, r.body.as_str()), (200, "1 entry purged\n"));
    assert!(!is_hit(&w.get("blog.test", "/p/b").await));
    let after: usize = ["/p/a", "/p/b", "/q"]
        .iter()
        .map(|p| w.origin.hits(p))
        .sum();
    assert_eq!(after, before + 1, "PURGE never reaches the origin");
    assert!(!w.origin.methods().contains(&"PURGE".to_string()));

    // Outside purge_allow: 403, entry kept.
    let w2 = world_with(storage, &[("purge_allow", "[\"10.0.0.0/8\"]")]).await;
    w2.get("blog.test", "/x").await;
    let r = w2.req("PURGE", "blog.test", "/x", &[]).await;
    assert_eq!(r.status, 403);
    assert!(is_hit(&w2.get("blog.test", "/x").await));
}

async fn tenant_isolation(storage: Storage) {
    let w = world(storage).await;
    w.origin
        .set("/same", 200, &[("cache-control", "max-age=60")]);
    assert_eq!(w.get("blog.test", "/same").await.body, "/same #1");
    assert_eq!(w.get("shop.test", "/same").await.body, "/same #2");
    assert_eq!(w.get("blog.test", "/same").await.body, "/same #1");
    assert_eq!(w.get("shop.test", "/same").await.body, "/same #2");
    // Purging one site leaves the other alone.
    let r = w
        .req(
            "PURGE",
            "shop.test",
            "/*",
            &[("x-cache-purge-match", "wildcard")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(is_hit(&w.get("blog.test", "/same").await));
    assert_eq!(w.get("shop.test", "/same").await.body, "/same #3");
}

async fn not_stored_list(storage: Storage) {
    let w = world(storage).await;
    type Headers = &'static [(&'static str, &'static str)];
    let cases: &[(&str, u16, Headers, Headers)] = &[
        (
            "/vary-star",
            200,
            &[("cache-control", "max-age=60"), ("vary", "*")],
            &[],
        ),
        (
            "/no-ct",
            200,
            &[("cache-control", "max-age=60"), ("content-type", "")],
            &[],
        ),
        (
            "/private",
            200,
            &[("cache-control", "max-age=60, private")],
            &[],
        ),
        ("/no-store", 200, &[("cache-control", "no-store")], &[]),
        (
            "/no-cache",
            200,
            &[("cache-control", "max-age=60, no-cache")],
            &[],
        ),
        (
            "/no-transform",
            200,
            &[("cache-control", "max-age=60, no-transform")],
            &[],
        ),
        (
            "/cookie",
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
            &[],
        ),
        (
            "/auth",
            200,
            &[("cache-control", "max-age=60")],
            &[("authorization", "Basic eDp5")],
        ),
        (
            "/found",
            302,
            &[("cache-control", "max-age=60"), ("location", "/")],
            &[],
        ),
        ("/error", 500, &[("cache-control", "max-age=60")], &[]),
    ];
    for (path, status, headers, req_headers) in cases {
        w.origin.set(path, *status, headers);
        let r1 = w.req("GET", "blog.test", path, req_headers).await;
        let r2 = w.req("GET", "blog.test", path, req_headers).await;
        assert_eq!(r1.status, *status, "{path}");
        assert!(
            !is_hit(&r2),
            "{path} must not be stored: {}",
            cache_status(&r2)
        );
        assert_eq!(w.origin.hits(path), 2, "{path} must not be stored");
    }
    // Authorization is fine when the response says public.
    w.origin.set(
        "/auth-public",
        200,
        &[("cache-control", "max-age=60, public")],
    );
    let a = [("authorization", "Basic eDp5")];
    w.req("GET", "blog.test", "/auth-public", &a).await;
    assert!(is_hit(&w.req("GET", "blog.test", "/auth-public", &a).await));
    // Per-site options: content_types allow-list and store_set_cookie.
    w.origin.set(
        "/png",
        200,
        &[
            ("cache-control", "max-age=60"),
            ("content-type", "image/png"),
        ],
    );
    w.get("img.test", "/png").await;
    let r = w.get("img.test", "/png").await;
    assert!(
        cache_status(&r).contains("detail=content-type"),
        "{}",
        cache_status(&r)
    );
    w.get("img.test", "/cookie").await;
    assert!(
        is_hit(&w.get("img.test", "/cookie").await),
        "store_set_cookie"
    );
}

async fn cache_lock_prevents_stampede(storage: Storage) {
    let w = world(storage).await;
    w.origin.set_spec(
        "/slow",
        Spec {
            delay: Duration::from_millis(500),
            ..Spec::new(200, &[("cache-control", "max-age=60")])
        },
    );
    let port = w.ew.port;
    let tasks: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async move { get(port, "blog.test", "/slow").await.unwrap() }))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().body, "/slow #1");
    }
    assert_eq!(w.origin.hits("/slow"), 1, "one request filled the entry");
}

async fn large_objects_stream_uncached(storage: Storage) {
    let w = world_with(storage, &[("max_object_size", "64KiB")]).await;
    for (path, size) in [("/small", 60_000), ("/big", 200_000)] {
        w.origin.set_spec(
            path,
            Spec {
                body_size: Some(size),
                ..Spec::new(200, &[("cache-control", "max-age=60")])
            },
        );
        for _ in 0..2 {
            let r = w.get("blog.test", path).await;
            assert_eq!(r.body.len(), size, "{path} complete");
        }
    }
    assert_eq!(w.origin.hits("/small"), 1);
    assert_eq!(w.origin.hits("/big"), 2);
}

async fn range_requests(storage: Storage) {
    let w = world(storage).await;
    // A stored object answers ranges itself.
    w.get("blog.test", "/r-cached").await;
    let r = w
        .req("GET", "blog.test", "/r-cached", &[("range", "bytes=0-3")])
        .await;
    assert_eq!((r.status, r.body.as_str()), (206, "/r-c"));
    assert!(is_hit(&r), "{}", cache_status(&r));
    assert_eq!(w.origin.hits("/r-cached"), 1);
    // A range that misses goes to the origin with its Range, and what comes
    // back (here the origin's whole 200) is not stored.
    let r = w
        .req("GET", "blog.test", "/r-miss", &[("range", "bytes=0-3")])
        .await;
    assert_eq!(r.status, 200);
    assert!(
        cache_status(&r).contains("detail=range"),
        "{}",
        cache_status(&r)
    );
    assert_eq!(
        w.origin.last_headers("/r-miss").get("range").unwrap(),
        "bytes=0-3"
    );
    assert_eq!(w.get("blog.test", "/r-miss").await.body, "/r-miss #2");
    // A 206 from the origin is never stored as the object.
    w.origin.set(
        "/p206",
        206,
        &[
            ("cache-control", "max-age=60"),
            ("content-range", "bytes 0-4/10"),
        ],
    );
    w.get("blog.test", "/p206").await;
    let r = w.get("blog.test", "/p206").await;
    assert!(!is_hit(&r), "{}", cache_status(&r));
    assert_eq!(w.origin.hits("/p206"), 2);
}

// ------------------------------------------------------ storage-specific

#[tokio::test(flavor = "multi_thread")]
async fn memory_storage_is_bounded() {
    let w = world_with(Storage::Memory, &[("memory", "{ max_size: 256KiB }")]).await;
    for i in 0..10 {
        let path = format!("/m{i}");
        w.origin.set_spec(
            &path,
            Spec {
                body_size: Some(50_000),
                ..Spec::new(200, &[("cache-control", "max-age=60")])
            },
        );
        w.get("blog.test", &path).await;
    }
    // The most recent entries are kept, the oldest were evicted.
    assert!(is_hit(&w.get("blog.test", "/m9").await));
    assert!(!is_hit(&w.get("blog.test", "/m0").await));
    let m = w.ew.metrics().await;
    let evicted: u64 = m
        .lines()
        .find(|l| l.starts_with("edgeward_cache_evictions_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(evicted >= 5, "{m}");
}

fn storage_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("edgeward_cache_storage_errors_total{"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_serves_from_origin_and_recovers() {
    let mut w = world(Storage::Redis).await;
    w.origin.set("/k", 200, &[("cache-control", "max-age=60")]);
    w.get("blog.test", "/k").await;
    assert!(is_hit(&w.get("blog.test", "/k").await));
    let mut redis = w.redis.take().unwrap();
    redis.kill();
    // The near cache forgets everything once the connection is seen closed
    // (a request racing with that may still get the local copy).
    eventually(DEADLINE, "a miss once Redis is gone", || async {
        let r = w.get("blog.test", "/k").await;
        assert_eq!(r.status, 200, "served without Redis");
        (!is_hit(&r)).then_some(())
    })
    .await;
    for i in 0..3 {
        let r = w.get("blog.test", "/k").await;
        assert_eq!(r.status, 200, "served without Redis");
        assert_eq!(r.body, format!("/k #{}", i + 3));
    }
    assert!(
        storage_errors(&w.ew.metrics().await) > 0,
        "failures counted"
    );
    // Redis comes back (empty): edgeward reconnects and caches again.
    assert!(redis.spawn().await, "redis restarted on its port");
    eventually(DEADLINE, "caching again after Redis restart", || async {
        w.get("blog.test", "/k").await;
        is_hit(&w.get("blog.test", "/k").await).then_some(())
    })
    .await;
    w.redis = Some(redis);
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_is_shared_by_instances() {
    let w = world(Storage::Redis).await;
    w.origin
        .set("/shared", 200, &[("cache-control", "max-age=60")]);
    w.get("blog.test", "/shared").await;
    // Hits read Redis until one is kept in this instance's near cache (a
    // read racing the invalidation of our own write is not kept).
    eventually(DEADLINE, "a hit from the near cache", || async {
        assert!(is_hit(&w.get("blog.test", "/shared").await));
        (local_hits(&w.ew.metrics().await) >= 1).then_some(())
    })
    .await;
    // A second edgeward on the same Redis sees the entry, and its purge
    // reaches the first one's near cache (Redis invalidation push).
    let ew2 = Edgeward::start(&config(
        &w.origin.address(),
        Storage::Redis,
        w.redis.as_ref(),
        REDIS_TIMEOUT,
    ))
    .await;
    let r = get(ew2.port, "blog.test", "/shared").await.unwrap();
    assert_eq!((r.body.as_str(), is_hit(&r)), ("/shared #1", true));
    let p = request(ew2.port, "PURGE", Some("blog.test"), "/shared", &[])
        .await
        .unwrap();
    assert_eq!(p.status, 200);
    // The push travels beside the PURGE's answer: a request racing it may
    // still get the old copy, for milliseconds.
    let r = eventually(DEADLINE, "the purge seen by the first instance", || async {
        let r = w.get("blog.test", "/shared").await;
        (!is_hit(&r)).then_some(r)
    })
    .await;
    assert_eq!(r.body, "/shared #2");
    // Written behind edgeward's back (here: deleted), same thing.
    let held = local_hits(&w.ew.metrics().await);
    eventually(DEADLINE, "held in the near cache again", || async {
        assert!(is_hit(&w.get("blog.test", "/shared").await));
        (local_hits(&w.ew.metrics().await) > held).then_some(())
    })
    .await;
    let redis = w.redis.as_ref().unwrap();
    assert_eq!(redis.command(&["FLUSHDB"]).await, "+OK");
    let r = eventually(DEADLINE, "FLUSHDB seen by the near cache", || async {
        let r = w.get("blog.test", "/shared").await;
        (!is_hit(&r)).then_some(r)
    })
    .await;
    assert_eq!(r.body, "/shared #3");
}

fn local_hits(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("edgeward_cache_redis_local_hits_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Put the world's Redis to sleep for `seconds` (`DEBUG SLEEP`, from a task
/// whose reply comes when it wakes) and return once it is asleep: a PING
/// from another connection goes unanswered.
async fn redis_asleep(w: &World, seconds: u32) -> tokio::task::JoinHandle<String> {
    let port = w.redis.as_ref().unwrap().port;
    let secs = seconds.to_string();
    let sleeper =
        tokio::spawn(async move { redis_command(port, &["DEBUG", "SLEEP", &secs]).await });
    eventually(DEADLINE, "redis busy with DEBUG SLEEP", || async {
        tokio::time::timeout(Duration::from_millis(100), w.redis.as_ref().unwrap().ping())
            .await
            .is_err()
            .then_some(())
    })
    .await;
    sleeper
}

/// Redis alive but not answering in time (`DEBUG SLEEP`): lookups give up
/// after `cache.redis.timeout` (200ms here) and the request is a miss from
/// the origin, counted; once Redis answers again, hits come back.
#[tokio::test(flavor = "multi_thread")]
async fn slow_redis_is_a_miss_not_a_wait() {
    let w = world_redis_timeout(Storage::RedisDirect, &[], "200ms").await;
    w.origin
        .set("/slow", 200, &[("cache-control", "max-age=60")]);
    w.get("blog.test", "/slow").await;
    assert!(is_hit(&w.get("blog.test", "/slow").await));
    let before = storage_errors(&w.ew.metrics().await);
    let sleeper = redis_asleep(&w, 3).await;
    let started = std::time::Instant::now();
    let r = w.get("blog.test", "/slow").await;
    let took = started.elapsed();
    assert_eq!((r.status, r.body.as_str()), (200, "/slow #2"));
    assert!(!is_hit(&r));
    assert!(
        took < Duration::from_millis(2500),
        "the request waited for Redis ({took:?})"
    );
    assert!(storage_errors(&w.ew.metrics().await) > before, "counted");
    assert_eq!(sleeper.await.unwrap(), "+OK");
    eventually(DEADLINE, "hits again once Redis answers", || async {
        w.get("blog.test", "/slow").await;
        is_hit(&w.get("blog.test", "/slow").await).then_some(())
    })
    .await;
}

/// A successful POST invalidates its URL off the response path: with Redis
/// asleep (and a Redis timeout longer than the sleep, so a purge on the
/// response path would have to wait it out), the POST is answered while
/// Redis still sleeps; a GET of the URL right after it skips the cache (the
/// purge is pending) and gets the origin's new answer; once Redis is back,
/// the purge lands and the URL is cached again.
#[tokio::test(flavor = "multi_thread")]
async fn invalidation_never_waits_for_redis() {
    let w = world_redis_timeout(Storage::RedisDirect, &[], "10s").await;
    w.origin.set("/p", 200, &[("cache-control", "max-age=60")]);
    assert_eq!(w.get("blog.test", "/p").await.body, "/p #1");
    assert!(is_hit(&w.get("blog.test", "/p").await));
    let sleeper = redis_asleep(&w, 3).await;
    let post = w.req("POST", "blog.test", "/p", &[]).await;
    assert_eq!(post.status, 200);
    assert!(
        !sleeper.is_finished(),
        "the POST was answered only after Redis woke up"
    );
    // Read-your-writes on this instance while the purge waits for Redis.
    let r = w.get("blog.test", "/p").await;
    assert_eq!(r.body, "/p #3");
    assert!(!is_hit(&r));
    assert!(!sleeper.is_finished(), "the GET waited for Redis");
    assert_eq!(sleeper.await.unwrap(), "+OK");
    eventually(DEADLINE, "cached again once the purge is done", || async {
        w.get("blog.test", "/p").await;
        is_hit(&w.get("blog.test", "/p").await).then_some(())
    })
    .await;
    assert!(
        w.get("blog.test", "/p").await.body != "/p #1",
        "the old entry survived the invalidation"
    );
}

// ------------------------------------------------------------ `check`

/// Loader tests: the positions asserted below (line:column) are those of
/// this hand-written layout, so the file stays literal text.
const CHECK_BASE: &str = r#"
listen: ["127.0.0.1:8080"]
CACHE
accounts:
  alice:
    log_dir: /tmp/alice
    sites:
      blog:
        addresses: ["blog.example.org"]
        upstream: { address: "127.0.0.1:3000" }
        SITE
"#;

fn check_cache(global: &str, site: &str) -> (i32, String) {
    check(&CHECK_BASE.replace("CACHE", global).replace("SITE", site))
}

#[test]
fn check_accepts_cache_sections() {
    for (global, site) in [
        ("", "cache: { enabled: true, ttl: 10s }"),
        (
            "cache:\n  storage: memory\n  memory: { max_size: 64MiB }\n  purge_allow: [\"127.0.0.1/32\", \"::1/128\"]",
            "cache: { enabled: true, content_types: [\"text/*\", \"application/json\"], store_set_cookie: true }",
        ),
        (
            "cache:\n  storage: redis\n  redis: { url: \"redis://127.0.0.1:6379/0\", key_prefix: \"edgeward:\", timeout: 50ms, local_size: 0 }\n  max_object_size: 1MiB",
            "cache: { enabled: false }",
        ),
        (
            "cache:\n  storage: redis\n  redis: { url: \"redis://127.0.0.1:6379/0\", local_size: 16MiB }",
            "cache: { enabled: false }",
        ),
    ] {
        let (code, out) = check_cache(global, site);
        assert_eq!(code, 0, "{global} / {site}: {out}");
    }
}

#[test]
fn check_reports_cache_errors_with_positions() {
    for (global, site, want) in [
        (
            "cache:\n  storage: disk",
            "",
            "4:12: cache.storage: \"disk\" is not a storage; expected memory or redis",
        ),
        (
            "cache:\n  storage: redis\n  redis: { url: \"http://x\" }",
            "",
            "5:17: cache.redis.url: \"http://x\" is not a Redis URL",
        ),
        (
            "cache:\n  memory: { max_size: lots }",
            "",
            "4:23: cache.memory.max_size: invalid size",
        ),
        (
            "cache:\n  purge_allow: [\"10.0.0.0/99\"]",
            "",
            "4:17: cache.purge_allow:",
        ),
        (
            "",
            "cache: { enabled: true, content_types: [\"html\"] }",
            "site alice/blog: cache.content_types: \"html\" is not a media type",
        ),
        (
            "",
            "cache: { enabled: true, ttl: 0s }",
            "site alice/blog: cache.ttl: must be more than 0",
        ),
        ("", "cache: { enabled: yes please }", "cache.enabled:"),
    ] {
        let (code, out) = check_cache(global, site);
        assert_eq!(code, 1, "{global} / {site}: {out}");
        assert!(out.contains(want), "want {want:?} in:\n{out}");
    }
}
