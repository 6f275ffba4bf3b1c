//! `TEST_LOG`: logs for rerunning a failing test with them. Quiet when unset
//! (or `0`); `TEST_LOG=1` gives the server's default levels, anything else is
//! an `EnvFilter` directive (`TEST_LOG=debug`, `TEST_LOG=ticketing_store=trace`).

use std::sync::{Once, OnceLock};

use tracing_subscriber::EnvFilter;

/// The filter `TEST_LOG` asks for, if any.
pub fn test_log() -> Option<&'static str> {
    static DIRECTIVE: OnceLock<Option<String>> = OnceLock::new();
    DIRECTIVE
        .get_or_init(|| match std::env::var("TEST_LOG").unwrap_or_default().trim() {
            "" | "0" => None,
            // As `ticketing serve` logs without RUST_LOG (facade/src/telemetry.rs).
            "1" => Some("info,tower_http=warn".to_owned()),
            directive => Some(directive.to_owned()),
        })
        .as_deref()
}

/// Installs a subscriber for the in-process servers once per test binary,
/// when `TEST_LOG` asks for one. It writes to the test writer, so libtest
/// keeps each test's lines with that test and shows them when it fails.
pub fn init_test_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Some(directive) = test_log() {
            let _ = tracing_subscriber::fmt().with_env_filter(EnvFilter::new(directive)).with_test_writer().try_init();
        }
    });
}
