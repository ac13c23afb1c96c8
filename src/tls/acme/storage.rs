//! Where ACME keeps its state: the account, each name's certificate and key,
//! challenge tokens and (Redis) a lock per name.
//!
//! - `dir`: files under `tls.storage.dir` (`accounts/<hash>.json`,
//!   `certs/<name>.pem`, `certs/<name>.key`; keys and the account mode
//!   0600). One instance: tokens live in memory, no lock is needed.
//! - `redis`: `<prefix>account:<hash>` (sealed), `<prefix>cert:<name>` (a
//!   hash: `cert`, `key` sealed, `fp` the leaf's fingerprint),
//!   `<prefix>token:<token>` (10 minutes), `<prefix>lock:<name>` (a fencing
//!   token from `<prefix>fence:<name>`, set NX with a TTL the holder
//!   renews). A certificate is stored only while its writer still holds
//!   the lock. Private keys and the account are sealed with AES-256-GCM
//!   (`seal.rs`): a dump of the Redis database leaks no key.

use super::seal::{self, SealKey};
use super::{StorageKind, StorageSettings};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long a challenge token is kept (the CA validates within seconds).
const TOKEN_TTL: Duration = Duration::from_secs(600);
/// A lock's time to live; the holder renews it every third of this.
pub(super) const LOCK_TTL: Duration = Duration::from_secs(30);
/// One Redis command's deadline.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum StorageError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: no answer within {REDIS_TIMEOUT:?}")]
    Timeout,
    #[error("{0}")]
    Seal(#[from] seal::SealError),
    #[error("not a shared storage")]
    NotShared,
    #[error("the lock on {0} was lost (another instance took it over)")]
    LockLost(String),
}

/// A certificate chain and its key, as PEM.
pub(crate) struct Stored {
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

pub(crate) enum Storage {
    Dir {
        dir: PathBuf,
        tokens: Mutex<HashMap<String, String>>,
    },
    Redis(Box<RedisStorage>),
}

pub(crate) struct RedisStorage {
    client: redis::Client,
    prefix: String,
    key: SealKey,
    conn: OnceLock<ConnectionManager>,
}

/// A held lock (Redis): its fencing token.
#[derive(Debug, Clone)]
pub(crate) struct Lock {
    pub(crate) name: String,
    pub(crate) token: String,
}

// Set the value only while the lock holds our token.
const STORE_IF_HELD: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('HSET', KEYS[2], 'cert', ARGV[2], 'key', ARGV[3], 'fp', ARGV[4]) \
     return 1 else return 0 end";
const RENEW_IF_HELD: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE_IF_HELD: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

impl Storage {
    /// Open the storage (no I/O yet; Redis connects on first use).
    pub(crate) fn open(settings: &StorageSettings) -> Result<Storage, StorageError> {
        Ok(match &settings.kind {
            StorageKind::Dir(dir) => Storage::Dir {
                dir: dir.clone(),
                tokens: Mutex::new(HashMap::new()),
            },
            StorageKind::Redis { url, prefix } => Storage::Redis(Box::new(RedisStorage {
                client: redis::Client::open(url.as_str())?,
                prefix: prefix.clone(),
                key: SealKey::new(settings.encryption_key.as_ref().map_or([0; 32], |k| k.0)),
                conn: OnceLock::new(),
            })),
        })
    }

    pub(crate) fn is_shared(&self) -> bool {
        matches!(self, Storage::Redis(_))
    }

    fn conn(&self) -> Result<ConnectionManager, StorageError> {
        let Storage::Redis(r) = self else {
            return Err(StorageError::NotShared);
        };
        let (client, conn) = (&r.client, &r.conn);
        if let Some(c) = conn.get() {
            return Ok(c.clone());
        }
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let c = ConnectionManager::new_lazy_with_config(client.clone(), cfg)?;
        Ok(conn.get_or_init(|| c).clone())
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StorageError> {
        let mut conn = self.conn()?;
        match tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StorageError::Timeout),
        }
    }

    fn key(&self, what: &str, name: &str) -> String {
        match self {
            Storage::Redis(r) => format!("{}{what}:{name}", r.prefix),
            Storage::Dir { .. } => String::new(),
        }
    }

    /// The account credentials (JSON) for the CA `directory_id`.
    pub(crate) async fn account(
        &self,
        directory_id: &str,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Storage::Dir { dir, .. } => {
                read_optional(&dir.join("accounts").join(format!("{directory_id}.json")))
            }
            Storage::Redis(r) => {
                let k = self.key("account", directory_id);
                let sealed: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(&k)).await?;
                Ok(match sealed {
                    Some(s) => Some(r.key.open(&s, k.as_bytes())?),
                    None => None,
                })
            }
        }
    }

    /// Keep the account; with Redis only if none is stored yet (two
    /// instances creating one at once: the first stored wins). Returns
    /// the credentials now stored.
    pub(crate) async fn put_account(
        &self,
        directory_id: &str,
        creds: &[u8],
    ) -> Result<Vec<u8>, StorageError> {
        match self {
            Storage::Dir { dir, .. } => {
                write_private(
                    &dir.join("accounts").join(format!("{directory_id}.json")),
                    creds,
                )?;
                Ok(creds.to_vec())
            }
            Storage::Redis(r) => {
                let k = self.key("account", directory_id);
                let sealed = r.key.seal(creds, k.as_bytes())?;
                let set: Option<String> = self
                    .query(redis::cmd("SET").arg(&k).arg(sealed).arg("NX"))
                    .await?;
                if set.is_some() {
                    return Ok(creds.to_vec());
                }
                Ok(self
                    .account(directory_id)
                    .await?
                    .unwrap_or_else(|| creds.to_vec()))
            }
        }
    }

    /// The stored certificate of `name`.
    pub(crate) async fn certificate(&self, name: &str) -> Result<Option<Stored>, StorageError> {
        match self {
            Storage::Dir { dir, .. } => {
                let certs = dir.join("certs");
                let cert = read_optional(&certs.join(format!("{name}.pem")))?;
                let key = read_optional(&certs.join(format!("{name}.key")))?;
                Ok(cert.zip(key).map(|(cert, key)| Stored { cert, key }))
            }
            Storage::Redis(r) => {
                let k = self.key("cert", name);
                let (cert, sealed): (Option<Vec<u8>>, Option<Vec<u8>>) = self
                    .query(redis::cmd("HMGET").arg(&k).arg("cert").arg("key"))
                    .await?;
                match (cert, sealed) {
                    (Some(cert), Some(sealed)) => Ok(Some(Stored {
                        cert,
                        key: r.key.open(&sealed, k.as_bytes())?,
                    })),
                    _ => Ok(None),
                }
            }
        }
    }

    /// The fingerprints of the stored certificates of `names` (Redis: one
    /// round trip; what the watcher polls).
    pub(crate) async fn fingerprints(
        &self,
        names: &[String],
    ) -> Result<Vec<Option<String>>, StorageError> {
        if !self.is_shared() || names.is_empty() {
            return Ok(vec![None; names.len()]);
        }
        let mut pipe = redis::pipe();
        for n in names {
            pipe.cmd("HGET").arg(self.key("cert", n)).arg("fp");
        }
        let mut conn = self.conn()?;
        match tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async(&mut conn)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StorageError::Timeout),
        }
    }

    /// Keep `name`'s new certificate; with Redis only while `lock` holds.
    pub(crate) async fn put_certificate(
        &self,
        name: &str,
        stored: &Stored,
        fingerprint: &str,
        lock: Option<&Lock>,
    ) -> Result<(), StorageError> {
        match self {
            Storage::Dir { dir, .. } => {
                let certs = dir.join("certs");
                write_private(&certs.join(format!("{name}.key")), &stored.key)?;
                write_private(&certs.join(format!("{name}.pem")), &stored.cert)
            }
            Storage::Redis(r) => {
                let k = self.key("cert", name);
                let sealed = r.key.seal(&stored.key, k.as_bytes())?;
                let token = lock.map_or("", |l| l.token.as_str());
                let done: i64 = self
                    .query(
                        redis::cmd("EVAL")
                            .arg(STORE_IF_HELD)
                            .arg(2)
                            .arg(self.key("lock", name))
                            .arg(&k)
                            .arg(token)
                            .arg(&stored.cert)
                            .arg(sealed)
                            .arg(fingerprint),
                    )
                    .await?;
                if done == 1 {
                    Ok(())
                } else {
                    Err(StorageError::LockLost(name.to_string()))
                }
            }
        }
    }

    /// Keep a challenge's key authorization for the CA to fetch.
    pub(crate) async fn put_token(&self, token: &str, key_auth: &str) -> Result<(), StorageError> {
        match self {
            Storage::Dir { tokens, .. } => {
                let mut t = tokens.lock().unwrap_or_else(|e| e.into_inner());
                t.insert(token.to_string(), key_auth.to_string());
                Ok(())
            }
            Storage::Redis(_) => {
                let ttl = TOKEN_TTL.as_millis() as u64;
                self.query::<()>(
                    redis::cmd("SET")
                        .arg(self.key("token", token))
                        .arg(key_auth)
                        .arg("PX")
                        .arg(ttl),
                )
                .await
            }
        }
    }

    pub(crate) async fn token(&self, token: &str) -> Result<Option<String>, StorageError> {
        match self {
            Storage::Dir { tokens, .. } => {
                let t = tokens.lock().unwrap_or_else(|e| e.into_inner());
                Ok(t.get(token).cloned())
            }
            Storage::Redis(_) => {
                self.query(redis::cmd("GET").arg(self.key("token", token)))
                    .await
            }
        }
    }

    pub(crate) async fn remove_token(&self, token: &str) -> Result<(), StorageError> {
        match self {
            Storage::Dir { tokens, .. } => {
                let mut t = tokens.lock().unwrap_or_else(|e| e.into_inner());
                t.remove(token);
                Ok(())
            }
            Storage::Redis(_) => {
                self.query(redis::cmd("DEL").arg(self.key("token", token)))
                    .await
            }
        }
    }

    /// Take `name`'s lock: Some when this instance may order (always with
    /// `dir`), None while another instance holds it.
    pub(crate) async fn try_lock(&self, name: &str) -> Result<Option<Lock>, StorageError> {
        if !self.is_shared() {
            return Ok(Some(Lock {
                name: name.to_string(),
                token: String::new(),
            }));
        }
        let fence: i64 = self
            .query(redis::cmd("INCR").arg(self.key("fence", name)))
            .await?;
        let token = format!("{fence}:{}", std::process::id());
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(self.key("lock", name))
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(LOCK_TTL.as_millis() as u64),
            )
            .await?;
        Ok(set.map(|_| Lock {
            name: name.to_string(),
            token,
        }))
    }

    /// Extend a held lock; Err(LockLost) when it is no longer ours.
    pub(crate) async fn renew_lock(&self, lock: &Lock) -> Result<(), StorageError> {
        if !self.is_shared() {
            return Ok(());
        }
        let renewed: i64 = self
            .query(
                redis::cmd("EVAL")
                    .arg(RENEW_IF_HELD)
                    .arg(1)
                    .arg(self.key("lock", &lock.name))
                    .arg(&lock.token)
                    .arg(LOCK_TTL.as_millis() as u64),
            )
            .await?;
        if renewed == 1 {
            Ok(())
        } else {
            Err(StorageError::LockLost(lock.name.clone()))
        }
    }

    pub(crate) async fn release(&self, lock: &Lock) -> Result<(), StorageError> {
        if !self.is_shared() {
            return Ok(());
        }
        self.query::<i64>(
            redis::cmd("EVAL")
                .arg(RELEASE_IF_HELD)
                .arg(1)
                .arg(self.key("lock", &lock.name))
                .arg(&lock.token),
        )
        .await
        .map(|_| ())
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StorageError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write `bytes` to `path` (mode 0600) through a temporary file and a
/// rename, so a reader never sees half a file.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let io = |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
