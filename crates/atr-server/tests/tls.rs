//! HTTPS: the server with a self-signed certificate on 127.0.0.1, a token and FHIR reads over
//! TLS, the `https` base in discovery, and what happens to plain HTTP and unusable PEM files.

mod common;

use atr_auth::SigningAlg;
use atr_server::tls::{TlsError, TlsSettings};

/// A self-signed certificate for 127.0.0.1 and its key, written as PEM files in `dir`.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("certificate");
    let cert_pem = certified.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (cert, key, cert_pem)
}

async fn tls_app() -> common::TestApp {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key, pem) = self_signed(dir.path());
    let settings = TlsSettings::from_pem_files(&cert, &key).expect("usable certificate");
    let root = reqwest::Certificate::from_pem(pem.as_bytes()).expect("root");
    common::spawn_sqlite_tls(settings, root).await
}

#[tokio::test]
async fn https_serves_tokens_and_fhir_with_https_urls_in_discovery() {
    let app = tls_app().await;
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    assert!(app.token_url.starts_with("https://"), "{}", app.token_url);

    let smart: serde_json::Value = app
        .anon
        .get(app.url(".well-known/smart-configuration"))
        .send()
        .await
        .expect("discovery over https")
        .json()
        .await
        .expect("json");
    assert_eq!(smart["token_endpoint"], app.token_url.as_str());

    let consumer = app
        .register(
            "tls-reader",
            SigningAlg::Es384,
            &["http://hl7.org/fhir/sid/us-npi|1234567893"],
            &["system/*.read"],
            false,
        )
        .await;
    let token = app
        .token(&consumer, "system/*.read")
        .await
        .expect("a token over https");
    let metadata = app
        .client_with(&token)
        .get(app.url("metadata"))
        .header("Accept", "application/fhir+json")
        .send()
        .await
        .expect("metadata over https");
    assert_eq!(metadata.status(), 200);
    let cs: serde_json::Value = metadata.json().await.expect("json");
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert!(
        cs["implementation"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "{}",
        cs["implementation"]
    );
    let (status, _) = app.get_json("Group?_summary=count").await;
    assert_eq!(status, 200, "the admin client's reads go over https too");
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_answer() {
    let app = tls_app().await;
    let plain = app.base.replacen("https://", "http://", 1);
    let r = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("client")
        .get(format!("{plain}/metadata"))
        .send()
        .await;
    assert!(
        r.is_err(),
        "plain http was answered: {:?}",
        r.map(|r| r.status())
    );
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_cannot_connect() {
    let app = tls_app().await;
    let r = reqwest::Client::new().get(app.url("metadata")).send().await;
    assert!(
        r.is_err(),
        "an untrusted self-signed certificate was accepted"
    );
}

#[test]
fn missing_garbled_or_mismatched_pem_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key, _) = self_signed(dir.path());

    let missing = dir.path().join("absent.pem");
    let e = TlsSettings::from_pem_files(&missing, &key).expect_err("missing cert");
    assert!(matches!(e, TlsError::Certificate { .. }), "{e}");
    assert!(e.to_string().contains("absent.pem"), "{e}");

    let e = TlsSettings::from_pem_files(&cert, &missing).expect_err("missing key");
    assert!(matches!(e, TlsError::Key { .. }), "{e}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let e = TlsSettings::from_pem_files(&garbage, &key).expect_err("no PEM");
    assert!(matches!(e, TlsError::Certificate { .. }), "{e}");
    let e = TlsSettings::from_pem_files(&cert, &garbage).expect_err("no key");
    assert!(matches!(e, TlsError::Key { .. }), "{e}");

    // The key of another certificate.
    let other = tempfile::tempdir().expect("dir");
    let (_, other_key, _) = self_signed(other.path());
    let e = TlsSettings::from_pem_files(&cert, &other_key).expect_err("mismatched pair");
    assert!(matches!(e, TlsError::Config(_)), "{e}");
    assert!(!e.to_string().contains('\n'), "one line: {e}");
}
