//! One ACME order (RFC 8555) for one name, HTTP-01: account (stored once),
//! new order, challenge token into the storage, ready, poll, CSR with a
//! fresh ECDSA P-256 key, certificate.

use super::AcmeSettings;
use super::storage::{Storage, StorageError, Stored};
use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Why an order failed (`edgeward_acme_orders_total{result}` says `failed`;
/// the reason goes to the sites log).
#[derive(Debug, thiserror::Error)]
pub(crate) enum OrderError {
    #[error("the CA: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("the CA could not validate the challenge: {0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Other(String),
}

/// The HTTP client instant-acme talks to the CA with: the system's roots
/// plus `ca_roots`; remembers the last `Retry-After` the CA sent.
#[derive(Clone)]
struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        BodyWrapper<Bytes>,
    >,
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl HttpClient for Client {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.inner.request(req);
        let slot = self.retry_after.clone();
        Box::pin(async move {
            let rsp = fut
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            if let Some(at) = rsp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after)
            {
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}

/// `Retry-After`: seconds or an HTTP date.
fn retry_after(v: &str) -> Option<SystemTime> {
    match v.trim().parse::<u64>() {
        Ok(secs) => Some(SystemTime::now() + Duration::from_secs(secs)),
        Err(_) => httpdate::parse_http_date(v).ok(),
    }
}

/// The TLS roots to check the CA with.
fn roots(settings: &AcmeSettings) -> Result<rustls::RootCertStore, OrderError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = &settings.ca_roots {
        let pem = std::fs::read(path)
            .map_err(|e| OrderError::Other(format!("cannot read {}: {e}", path.display())))?;
        let certs = openssl::x509::X509::stack_from_pem(&pem)
            .map_err(|e| OrderError::Other(format!("{}: {e}", path.display())))?;
        for c in certs {
            if let Ok(der) = c.to_der() {
                roots
                    .add(rustls::pki_types::CertificateDer::from(der))
                    .map_err(|e| OrderError::Other(format!("{}: {e}", path.display())))?;
            }
        }
    }
    Ok(roots)
}

/// Where the client keeps the last `Retry-After` it saw.
pub(super) type RetrySlot = Arc<Mutex<Option<SystemTime>>>;

/// The `Retry-After` in `slot`, if still ahead.
pub(super) fn retry_after_in(slot: &RetrySlot) -> Option<SystemTime> {
    let at = *slot.lock().unwrap_or_else(|e| e.into_inner());
    at.filter(|t| *t > SystemTime::now())
}

fn client(settings: &AcmeSettings, retry_after: RetrySlot) -> Result<Client, OrderError> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| OrderError::Other(e.to_string()))?
    .with_root_certificates(roots(settings)?)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client {
        inner: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
        retry_after,
    })
}

/// An id for the CA's directory URL (accounts are per CA).
pub(super) fn directory_id(directory: &str) -> String {
    openssl::sha::sha256(directory.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An order in progress: the account, on a client that reports the CA's
/// Retry-After into the slot given to `open`.
pub(super) struct Session {
    pub(super) account: Account,
}

impl Session {
    /// Open the stored account, or create one and store it.
    pub(super) async fn open(
        settings: &AcmeSettings,
        storage: &Storage,
        retry_after: RetrySlot,
    ) -> Result<Session, OrderError> {
        let client = client(settings, retry_after)?;
        let id = directory_id(&settings.directory);
        let stored = storage.account(&id).await?;
        let account = match stored
            .as_deref()
            .and_then(|s| serde_json::from_slice::<AccountCredentials>(s).ok())
        {
            Some(creds) => {
                Account::builder_with_http(Box::new(client.clone()))
                    .from_credentials(creds)
                    .await?
            }
            None => {
                let contact = settings.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, creds) = Account::builder_with_http(Box::new(client.clone()))
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        settings.directory.clone(),
                        None,
                    )
                    .await?;
                let json =
                    serde_json::to_vec(&creds).map_err(|e| OrderError::Other(e.to_string()))?;
                let kept = storage.put_account(&id, &json).await?;
                if kept == json {
                    account
                } else {
                    // Another instance stored its account first: use that one.
                    let creds: AccountCredentials = serde_json::from_slice(&kept)
                        .map_err(|e| OrderError::Other(e.to_string()))?;
                    Account::builder_with_http(Box::new(client.clone()))
                        .from_credentials(creds)
                        .await?
                }
            }
        };
        Ok(Session { account })
    }
}

/// Order a certificate for `name` and store it (under `lock`).
pub(super) async fn order(
    session: &Session,
    storage: &Storage,
    name: &str,
) -> Result<Stored, OrderError> {
    let ids = [Identifier::Dns(name.to_string())];
    let mut order = session.account.new_order(&NewOrder::new(&ids)).await?;
    let mut tokens = Vec::new();
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(a) = authorizations.next().await {
            let mut a = a?;
            if a.status == AuthorizationStatus::Valid {
                continue;
            }
            let mut challenge = a
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| OrderError::Other("the CA offers no HTTP-01 challenge".into()))?;
            let key_auth = challenge.key_authorization();
            storage
                .put_token(&challenge.token, key_auth.as_str())
                .await?;
            tokens.push(challenge.token.clone());
            challenge.set_ready().await?;
        }
        let policy = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(90));
        match order.poll_ready(&policy).await? {
            OrderStatus::Ready => {}
            status => {
                return Err(OrderError::Invalid(
                    invalid_reason(&mut order, status).await,
                ));
            }
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| OrderError::Other(format!("key: {e}")))?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
            .map_err(|e| OrderError::Other(format!("CSR: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| OrderError::Other(format!("CSR: {e}")))?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&policy).await?;
        Ok(Stored {
            cert: chain.into_bytes(),
            key: key.serialize_pem().into_bytes(),
        })
    }
    .await;
    for t in &tokens {
        let _ = storage.remove_token(t).await;
    }
    result
}

/// What the CA said about an invalid order: its error, else the first
/// failed challenge's.
async fn invalid_reason(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    if let Some(e) = &order.state().error {
        return e.to_string();
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut a)) = authorizations.next().await {
        if let Ok(state) = a.refresh().await
            && let Some(e) = state.challenges.iter().find_map(|c| c.error.as_ref())
        {
            return e.to_string();
        }
    }
    format!("order status {status:?}")
}
