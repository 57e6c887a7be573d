//! The web page served at `/` on the management port: one self-contained page from the
//! binary (nothing fetched at run time but the API on the same origin).

use crate::http::{Response, Status};

/// Until the page lands (issue 13 item 5), `/` says where the API is instead of a blank
/// 404, as text a browser shows.
pub(super) fn page<S>() -> Response<S> {
    Response::new(Status::OK)
        .header("content-type", "text/plain; charset=utf-8")
        .bytes(b"coney management API: /api/overview (HTTP Basic auth)\n".to_vec())
}
