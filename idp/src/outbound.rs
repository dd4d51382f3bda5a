//! The provider's own HTTPS requests (the `server` feature): back-channel logout tokens POSTed
//! to clients and clients' JWKS fetched from their URIs, both through one
//! [`tianping_net::HttpsClient`] built with the zone's trust (and the IdP's node certificate,
//! for clients that ask for one), and the task that sends the queued logout tokens when they are
//! queued and when the next retry is due.

use std::sync::Arc;
use std::time::Duration;

use tianping_core::Clock;
use tianping_net::HttpsClient;
use tokio::sync::{Notify, watch};

use crate::backchannel::LogoutSender;
use crate::client_auth::{FetchFuture, JwksFetch};
use crate::server::Idp;
use crate::store::Store;

/// [`LogoutSender`] and [`JwksFetch`] over an [`HttpsClient`] (TLS 1.3, the zone's trust, no
/// redirects followed, the client's timeout and body cap).
#[derive(Debug, Clone)]
pub struct ZoneHttps {
    client: HttpsClient,
}

impl ZoneHttps {
    /// Requests through `client`.
    pub fn new(client: HttpsClient) -> Self {
        Self { client }
    }
}

impl LogoutSender for ZoneHttps {
    fn post<'a>(
        &'a self,
        uri: &'a str,
        form: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let r = self
                .client
                .post(uri, "application/x-www-form-urlencoded", form)
                .await
                .map_err(|e| e.to_string())?;
            if r.status.is_success() {
                Ok(())
            } else {
                Err(format!("`{uri}` answered {}", r.status))
            }
        })
    }
}

impl JwksFetch for ZoneHttps {
    fn fetch<'a>(&'a self, uri: &'a str) -> FetchFuture<'a> {
        Box::pin(async move {
            let r = self.client.get(uri).await.map_err(|e| e.to_string())?;
            if r.status.is_success() {
                Ok(r.body.to_vec())
            } else {
                Err(format!("`{uri}` answered {}", r.status))
            }
        })
    }
}

/// The least wait after a delivery round that failed on the store or found no provider yet (so
/// neither is asked again in a tight loop).
const AFTER_STORE_ERROR: Duration = Duration::from_secs(1);

/// Sends the back-channel logout tokens queued in `store` through the provider `current`
/// gives (the one in force, as keys rotate): a round at start, at each `wake` (a logout was
/// queued) and when the earliest retry is due, until `stop` turns true. No polling: between
/// those it sleeps.
pub fn spawn_logout_delivery(
    current: Arc<dyn Fn() -> Option<Idp> + Send + Sync>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let delivered = match current() {
                Some(idp) => idp.deliver_logouts().await.is_ok(),
                None => false,
            };
            let least = if delivered {
                Duration::ZERO
            } else {
                AFTER_STORE_ERROR
            };
            let due = match crate::backchannel::pending_logouts(&*store) {
                Ok(pending) => pending.iter().map(|p| p.due_ms).min(),
                Err(_) => Some(clock.now().as_millis()),
            };
            let wait = due.map(|ms| {
                let ms = ms.saturating_sub(clock.now().as_millis());
                Duration::from_millis(ms).max(least)
            });
            tokio::select! {
                _ = stop.changed() => break,
                () = wake.notified() => {}
                () = async {
                    match wait {
                        Some(w) => tokio::time::sleep(w).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            if *stop.borrow() {
                break;
            }
        }
    })
}
