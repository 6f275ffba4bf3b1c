//! CPU profiles on demand (admin listener only): a flamegraph SVG, or the
//! pprof protobuf for `go tool pprof` and compatible viewers.

use std::time::Duration;

use axum::{
    extract::Query,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use pprof::protos::Message;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct ProfileQuery {
    /// How long to sample (1–60 s, default 10).
    seconds: Option<u64>,
}

enum Format {
    Flamegraph,
    Pprof,
}

pub async fn flamegraph(Query(query): Query<ProfileQuery>) -> Response {
    profile(query, Format::Flamegraph).await
}

pub async fn pprof(Query(query): Query<ProfileQuery>) -> Response {
    profile(query, Format::Pprof).await
}

async fn profile(query: ProfileQuery, format: Format) -> Response {
    let seconds = query.seconds.unwrap_or(10).clamp(1, 60);
    // The sampler lives on a blocking thread for the whole window.
    let result = tokio::task::spawn_blocking(move || -> Result<(&'static str, Vec<u8>), String> {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(99)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(seconds));
        let report = guard.report().build().map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        match format {
            Format::Flamegraph => {
                report.flamegraph(&mut body).map_err(|e| e.to_string())?;
                Ok(("image/svg+xml", body))
            }
            Format::Pprof => {
                report.pprof().map_err(|e| e.to_string())?.encode(&mut body).map_err(|e| e.to_string())?;
                Ok(("application/octet-stream", body))
            }
        }
    })
    .await;
    match result {
        Ok(Ok((content_type, body))) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        // One profile at a time: the sampler is process-wide.
        Ok(Err(error)) => (StatusCode::CONFLICT, error).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
