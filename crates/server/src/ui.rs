//! The web UI's static files, embedded at build time (`build.rs` over `frontend/dist`).
//!
//! Served by the router's fallback, so API routes always win: a GET of a non-API path is the
//! file of that name when there is one, else (for a browser, i.e. a request that accepts
//! `text/html`) `index.html`, which routes on the client (SPA fallback). Paths under `/v1`,
//! `/api`, `/admin`, `/metrics`, `/health`, `/tokenize` and `/detokenize` never get HTML: their
//! 404s stay OpenAI-shaped JSON. Hashed files under `/assets/` are cached for a year,
//! everything else revalidated (`no-cache`). Text files have a gzip copy made at build time,
//! sent with `Content-Encoding: gzip` to clients that accept it.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::SharedState;

/// One embedded file.
#[derive(Debug)]
pub struct UiAsset {
    /// URL path, starting with `/` (`/index.html`, `/assets/index-1a2b.js`).
    pub path: &'static str,
    pub body: &'static [u8],
    /// Gzip of `body`, for text types when it is smaller.
    pub gzip: Option<&'static [u8]>,
    pub content_type: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// What `GET /` serves.
#[derive(Clone, Copy, Debug, Default)]
pub enum UiMode {
    /// The files embedded at build time (or the "not built" page when there were none).
    #[default]
    Embedded,
    /// `--no-ui`: no HTML at all; unknown paths are JSON 404s.
    Off,
    /// These files instead (tests, embedders).
    Assets(&'static [UiAsset]),
}

impl UiMode {
    fn assets(self) -> Option<&'static [UiAsset]> {
        match self {
            UiMode::Embedded => Some(UI_ASSETS),
            UiMode::Off => None,
            UiMode::Assets(a) => Some(a),
        }
    }
}

/// Whether this build has the UI embedded.
pub fn embedded() -> bool {
    UI_BUILT
}

const API_PREFIXES: &[&str] = &[
    "/v1",
    "/api",
    "/admin",
    "/metrics",
    "/health",
    "/tokenize",
    "/detokenize",
];

/// Whether a path belongs to the API (and so never gets the UI's HTML).
pub fn is_api_path(raw: &str) -> bool {
    let p = crate::gateway::normalize_path(raw);
    API_PREFIXES
        .iter()
        .any(|a| p == *a || p.starts_with(&format!("{a}/")))
}

/// The Content-Security-Policy of UI pages: scripts and styles from this origin only (plus
/// inline styles, which Svelte transitions write), images and fonts also as `data:` URLs.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; \
base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

fn accepts_html(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

fn accepts_gzip(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q0 = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !q0
        })
}

fn file_response(a: &UiAsset, req_headers: &HeaderMap) -> Response {
    let mut resp = match a.gzip {
        Some(z) if accepts_gzip(req_headers) => {
            let mut r = Response::new(Body::from(z));
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        _ => Response::new(Body::from(a.body)),
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    if a.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    let cache = if a.path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    security_headers(h);
    resp
}

const NOT_BUILT: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Hearth</title></head>
<body style=\"font-family: sans-serif; max-width: 40em; margin: 3em auto; line-height: 1.5\">
<h1>Hearth</h1>
<p>The server is running, but its web UI was not built into this binary.</p>
<p>To build it (needs Node.js 18 or later), run <code>scripts/build-ui.sh</code> in the
source tree, then rebuild Hearth (<code>cargo build --release -p hearth-cli</code>).</p>
<p>The OpenAI-compatible API is at <code>/v1</code>, e.g. <code>GET /v1/models</code>.</p>
</body></html>
";

/// The router's fallback: UI files and the SPA fallback for browsers; a JSON 404 otherwise.
pub async fn fallback(State(state): State<SharedState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let api_404 =
        || ApiError::not_found(format!("Unknown route: {} {}", req.method(), path)).into_response();
    let Some(assets) = state.config.ui.assets() else {
        return api_404();
    };
    if !get || is_api_path(&path) {
        return api_404();
    }
    let built = assets.iter().any(|a| a.path == "/index.html");
    if path != "/" {
        if let Some(a) = assets.iter().find(|a| a.path == path) {
            return file_response(a, req.headers());
        }
    }
    // A missing hashed asset is a 404, never the HTML page (a script tag would run HTML).
    if path.starts_with("/assets/") || !accepts_html(req.headers()) {
        return api_404();
    }
    match assets.iter().find(|a| a.path == "/index.html") {
        Some(index) if built => file_response(index, req.headers()),
        _ => {
            let mut resp = (StatusCode::OK, NOT_BUILT).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            security_headers(h);
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths() {
        for p in [
            "/v1/models",
            "/api/auth/me",
            "/ADMIN/v1/keys",
            "/metrics",
            "/health",
            "/tokenize",
        ] {
            assert!(is_api_path(p), "{p}");
        }
        for p in ["/", "/chat/c_1", "/assets/x.js", "/v1x", "/apis"] {
            assert!(!is_api_path(p), "{p}");
        }
    }

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.8"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, br"),
        );
        assert!(!accepts_gzip(&h));
    }
}
