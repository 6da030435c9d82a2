//! The storage conformance suite against both backends.

use crate::harness::{fresh_postgres, scratch_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_sqlite() {
    let dir = scratch_dir("conf-sqlite");
    let store = cutover_store::connect(&format!("sqlite:{}", dir.join("c.db").display()))
        .await
        .expect("open sqlite");
    assert_eq!(store.backend(), "sqlite");
    cutover_store::conformance::run(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_postgres() {
    let url = fresh_postgres().await;
    let store = cutover_store::connect(&url).await.expect("open postgres");
    assert_eq!(store.backend(), "postgres");
    cutover_store::conformance::run(store).await;
}

#[tokio::test]
async fn unreachable_database_is_a_clear_error() {
    let err = cutover_store::connect("postgres://nobody:pw@127.0.0.1:1/none")
        .await
        .err()
        .expect("must fail");
    assert!(
        matches!(err, cutover_store::StoreError::Unavailable(_)),
        "{err:?}"
    );
    let err = cutover_store::connect("mysql://x")
        .await
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("sqlite: or postgres://"), "{err}");
}
