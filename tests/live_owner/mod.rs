//! What the live-log tests share: the audit service's answer as an owner's control socket sends
//! it.

/// The audit service's answer as the HTTP response an owner's control socket sends.
pub(crate) fn audit_answer(
    r: tianping_audit::ServiceResponse,
) -> http::Response<tianping_net::ResponseBody> {
    http::Response::builder()
        .status(r.status)
        .header(http::header::CONTENT_TYPE, r.content_type)
        .body(tianping_net::full(r.body))
        .unwrap_or_default()
}
