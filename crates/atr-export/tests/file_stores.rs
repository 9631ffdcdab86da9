//! The export file stores keep one contract: the local directory and an S3 bucket (a real S3
//! API, `moto_server` on loopback) write, list, read ranges of, and remove a job's files alike.

mod moto;

use std::sync::Arc;

use atr_export::{ExportFileStore, ExportStorage};
use futures::TryStreamExt;

const BUCKET: &str = "atr-exports";

fn job() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn read_all(
    store: &dyn ExportFileStore,
    job: &str,
    name: &str,
    start: u64,
    end: u64,
) -> Vec<u8> {
    let stream = store
        .read(job, name, start, end)
        .await
        .expect("read")
        .expect("file exists");
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.expect("chunks");
    chunks.concat()
}

/// Lines of `n` bytes each (numbered, so a misplaced byte shows).
fn lines(count: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * n);
    for i in 0..count {
        let head = format!("{{\"n\":{i},\"pad\":\"");
        out.extend_from_slice(head.as_bytes());
        out.extend(std::iter::repeat_n(b'x', n - head.len() - 3));
        out.extend_from_slice(b"\"}\n");
    }
    out
}

async fn contract(store: Arc<dyn ExportFileStore>) {
    let job = job();
    store.start_job(&job).await.expect("start");
    assert_eq!(store.list(&job).await.expect("list"), Vec::<String>::new());

    let small = lines(10, 100);
    let mut w = store
        .create(&job, "Patient-1.ndjson")
        .await
        .expect("create");
    w.write(&small).await.expect("write");
    w.finish().await.expect("finish");
    // Larger than a part (5 MiB in the S3 settings below): a multipart upload, written in
    // pieces as the engine writes.
    let big = lines(120_000, 100);
    let mut w = store
        .create(&job, "Coverage-1.ndjson")
        .await
        .expect("create");
    for piece in big.chunks(256 * 1024) {
        w.write(piece).await.expect("write");
    }
    w.finish().await.expect("finish");

    let mut names = store.list(&job).await.expect("list");
    names.sort();
    assert_eq!(names, vec!["Coverage-1.ndjson", "Patient-1.ndjson"]);
    assert_eq!(
        store.len(&job, "Patient-1.ndjson").await.expect("len"),
        Some(1000)
    );
    assert_eq!(
        store.len(&job, "Coverage-1.ndjson").await.expect("len"),
        Some(big.len() as u64)
    );
    assert_eq!(
        store.len(&job, "Patient-2.ndjson").await.expect("len"),
        None
    );
    assert!(
        store
            .read(&job, "Patient-2.ndjson", 0, 10)
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        read_all(store.as_ref(), &job, "Patient-1.ndjson", 0, 1000).await,
        small
    );
    assert_eq!(
        read_all(store.as_ref(), &job, "Patient-1.ndjson", 150, 420).await,
        &small[150..420]
    );
    let n = big.len() as u64;
    assert_eq!(
        read_all(store.as_ref(), &job, "Coverage-1.ndjson", 0, n).await,
        big
    );
    let (a, b) = (5 * 1024 * 1024 - 7, 5 * 1024 * 1024 + 9);
    assert_eq!(
        read_all(store.as_ref(), &job, "Coverage-1.ndjson", a, b).await,
        &big[a as usize..b as usize]
    );
    // Names this engine never makes are refused, never turned into a path or key.
    assert!(store.len(&job, "../Patient-1.ndjson").await.is_err());
    assert!(store.create("not-a-job", "Patient-1.ndjson").await.is_err());

    store
        .remove(&job, "Patient-1.ndjson")
        .await
        .expect("remove");
    store
        .remove(&job, "Patient-1.ndjson")
        .await
        .expect("remove again");
    assert_eq!(
        store.list(&job).await.expect("list"),
        vec!["Coverage-1.ndjson"]
    );

    // A rerun starts from nothing.
    store.start_job(&job).await.expect("restart");
    assert_eq!(store.list(&job).await.expect("list"), Vec::<String>::new());
    let mut w = store.create(&job, "Group-1.ndjson").await.expect("create");
    w.write(b"{}\n").await.expect("write");
    w.finish().await.expect("finish");
    store.remove_job(&job).await.expect("remove job");
    assert_eq!(store.list(&job).await.expect("list"), Vec::<String>::new());
    store.remove_job(&job).await.expect("remove job again");
}

#[tokio::test]
async fn the_local_directory_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("dir");
    let store = ExportStorage::Local.open(dir.path().into()).expect("store");
    contract(store).await;
}

#[tokio::test]
async fn an_s3_bucket_keeps_the_contract() {
    let Some(moto) = moto::start(BUCKET).await else {
        return;
    };
    let spool = tempfile::tempdir().expect("spool");
    let mut settings = moto.settings(BUCKET, "atr/exports");
    settings.part_bytes = 5 * 1024 * 1024;
    let store = ExportStorage::S3(settings)
        .open(spool.path().into())
        .expect("store");
    contract(store.clone()).await;
    // Nothing is left behind: not in the bucket, not in the spool.
    assert_eq!(moto.keys(BUCKET, "").await, Vec::<String>::new());
    assert_eq!(std::fs::read_dir(spool.path()).expect("spool").count(), 0);
}

#[tokio::test]
async fn a_rerun_removes_every_object_an_earlier_run_left() {
    let Some(moto) = moto::start(BUCKET).await else {
        return;
    };
    let spool = tempfile::tempdir().expect("spool");
    let store = ExportStorage::S3(moto.settings(BUCKET, "p"))
        .open(spool.path().into())
        .expect("store");
    let job = job();
    let other = job_other();
    moto.put(BUCKET, &format!("p/{job}/Patient-3.ndjson"), "stale\n")
        .await;
    moto.put(BUCKET, &format!("p/{job}/partial.tmp"), "stale\n")
        .await;
    moto.put(
        BUCKET,
        &format!("p/{other}/Patient-1.ndjson"),
        "another job\n",
    )
    .await;
    store.start_job(&job).await.expect("start");
    assert_eq!(
        moto.keys(BUCKET, &format!("p/{job}/")).await,
        Vec::<String>::new()
    );
    assert_eq!(moto.keys(BUCKET, &format!("p/{other}/")).await.len(), 1);
}

fn job_other() -> String {
    job()
}
