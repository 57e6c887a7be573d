//! The web page served at `/` on the management port: three files compiled into the binary
//! (src/mgmt/www), nothing fetched at run time but the API on the same origin. The page has
//! no inline script or style, so it goes out under a strict Content-Security-Policy: a queue
//! name an attacker chose can at worst be shown, never run.

use crate::http::{Response, Status};

const INDEX: &[u8] = include_bytes!("www/index.html");
const APP_JS: &[u8] = include_bytes!("www/app.js");
const APP_CSS: &[u8] = include_bytes!("www/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The file at `segments` (`[]` is the page), or None.
pub(super) fn file<S>(segments: &[String]) -> Option<Response<S>> {
    let (body, kind) = match segments {
        [] => (INDEX, "text/html; charset=utf-8"),
        [f] if f == "index.html" => (INDEX, "text/html; charset=utf-8"),
        [f] if f == "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        [f] if f == "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return None,
    };
    Some(
        Response::new(Status::OK)
            .header("content-type", kind)
            .header("content-security-policy", CSP)
            .header("x-content-type-options", "nosniff")
            .header("cache-control", "no-cache")
            .bytes(body.to_vec()),
    )
}
