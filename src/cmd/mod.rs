//! One module per command group; each parses its arguments and calls the crates.

pub(crate) mod audit;
pub(crate) mod certs;
pub(crate) mod demo;
pub(crate) mod exchange;
pub(crate) mod gateway;
pub(crate) mod idp;
pub(crate) mod init;
pub(crate) mod login;
pub(crate) mod policy;
pub(crate) mod service;
pub(crate) mod status;
pub(crate) mod up;

/// `serve_tls` of a component's public listener at `configured`, on port 0 at the port it had
/// before ([`tianping_core::rebind_addr`]: the URLs its peers know stay), or at `configured`
/// when that port was taken meanwhile; `handler` makes the listener's handler.
pub(crate) async fn serve_public_again<H: tianping_net::Handler>(
    dir: &tianping_core::DataDir,
    zone: &tianping_core::ZoneName,
    component: tianping_core::Component,
    configured: std::net::SocketAddr,
    tls: std::sync::Arc<dyn tianping_net::TlsSource>,
    options: tianping_net::ServerOptions,
    handler: impl Fn() -> H,
) -> miette::Result<tianping_net::ServerHandle> {
    use miette::IntoDiagnostic as _;
    let listener = tianping_core::Listener::Public;
    let again = tianping_core::rebind_addr(dir, zone, component, &listener, configured);
    match tianping_net::serve_tls(again, tls.clone(), options.clone(), handler()).await {
        Ok(s) => Ok(s),
        Err(_) if again != configured => {
            tianping_net::serve_tls(configured, tls, options, handler())
                .await
                .into_diagnostic()
        }
        Err(e) => Err(e).into_diagnostic(),
    }
}
