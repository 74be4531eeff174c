//! The UI's copy of the IPC types is generated: this fails when it is stale.

use std::path::PathBuf;

#[test]
fn generated_typescript_is_fresh() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(sallyport_service::typescript::PATH);
    let fresh = sallyport_service::typescript::render();
    if std::env::var_os("SALLYPORT_WRITE_TYPES").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{} is stale: run `SALLYPORT_WRITE_TYPES=1 cargo test -p sallyport-service --test typescript` and commit it",
        path.display()
    );
}
