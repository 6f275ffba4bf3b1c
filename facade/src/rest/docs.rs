//! The API reference for people: Redoc rendering `/openapi.json` at
//! `GET /docs`, its script served from the binary (no CDN).

use axum::{
    Router,
    http::{
        StatusCode,
        header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE},
    },
    response::{IntoResponse, Response},
    routing::get,
};

/// Redoc's standalone bundle (facade/build.rs); empty when the build had none.
static REDOC: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/redoc.standalone.js"));

const SCRIPT_PATH: &str = "/docs/redoc.standalone.js";

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ticketing API reference</title>
<link rel="icon" href="data:,">
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/docs/redoc.standalone.js"></script>
</body>
</html>
"#;

/// Nothing but this origin: Redoc styles inline and searches in a worker.
/// (Redoc hard-codes one image from its CDN, its sidebar logo: this policy
/// blocks it and Redoc hides it; nothing else leaves the origin.)
const POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
    font-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/docs", get(page)).route(SCRIPT_PATH, get(script))
}

async fn page() -> Response {
    if REDOC.is_empty() {
        let missing = "The API reference was built without Redoc: run `ci/lib.sh`'s \
            `ensure_npm_packages facade/docs` (ci/up and ci/test do) and build again. \
            The document itself is at /openapi.json.";
        return (StatusCode::SERVICE_UNAVAILABLE, missing).into_response();
    }
    ([(CONTENT_TYPE, "text/html; charset=utf-8"), (CONTENT_SECURITY_POLICY, POLICY)], PAGE).into_response()
}

async fn script() -> Response {
    if REDOC.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    // The bundle changes only with the binary.
    ([(CONTENT_TYPE, "text/javascript"), (CACHE_CONTROL, "public, max-age=3600")], REDOC).into_response()
}
