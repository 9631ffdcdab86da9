//! The one rule for a test that needs something outside the repository (PostgreSQL, a pip-installed
//! client, `moto_server`, `python3`) and does not find it.
//!
//! Outside CI the test skips that part and says so on the terminal: the line is written to the
//! process's real stderr, past libtest's output capture, so a plain `cargo test` shows it beside
//! `test … ok` instead of hiding it until `--nocapture`. Under `CI=true` it fails instead: CI
//! installs every such dependency, so an absent one there is a broken set-up, not a skip.

use std::io::Write;

/// Whether this run is CI (`CI` set to anything but empty, `0` or `false`, as CI services do).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// `what` (say "PostgreSQL at postgres://…") cannot be used here because of `why`. Under CI this
/// panics; otherwise it prints one `SKIPPED` line naming the running test and returns, and the
/// caller leaves that part of the test out.
pub fn unavailable(what: &str, why: &str) {
    assert!(
        !in_ci(),
        "{what} is required in CI (.ci/run sets it up): {why}"
    );
    // libtest names each test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // Written whole in one call so parallel tests' lines do not interleave.
    let line = format!("SKIPPED in {test}: {what}: {why}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
