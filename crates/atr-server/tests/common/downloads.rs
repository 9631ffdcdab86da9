//! The download checks of the export tests that every export store must pass. Apart from
//! `common` because other crates' tests include `common` and have no gzip decoder.

use serde_json::Value;

/// The download behaviours every export store must keep, checked against `whole` (the file as a
/// plain GET gave it): a byte range (206 with `Content-Range`), a range past the end (416
/// OperationOutcome), and gzip when asked for, unpacking to the same bytes.
pub async fn check_range_and_gzip(
    http: &reqwest::Client,
    token: &str,
    url: &str,
    whole: &bytes::Bytes,
) {
    let r = http
        .get(url)
        .header("Range", "bytes=10-109")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 10-109/{}", whole.len()).as_str()
    );
    assert_eq!(r.bytes().await.expect("body"), whole.slice(10..110));
    let r = http
        .get(url)
        .header("Range", format!("bytes={}-", whole.len() + 5))
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 416);
    let body: Value = r.json().await.expect("OperationOutcome");
    assert_eq!(body["resourceType"], "OperationOutcome");

    // reqwest would unpack gzip itself and hide the header: ask by hand.
    let raw = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client");
    let r = raw
        .get(url)
        .bearer_auth(token)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("gzip");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let packed = r.bytes().await.expect("body");
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&packed[..]),
        &mut unpacked,
    )
    .expect("gunzip");
    assert_eq!(unpacked, whole.to_vec());
}
