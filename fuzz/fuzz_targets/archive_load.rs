//! `docker load` archives into a scratch store: errors are fine, panics and escapes are not.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use skiff_image::ImageStore;
use skiff_image::db::Db;
use skiff_image::layers::Driver;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(&dir.path().join("m.redb")).unwrap());
    let store = ImageStore::open(dir.path().join("image"), Driver::Copy, db, Some(64 << 20)).unwrap();
    let _ = skiff_image::archive::load(&store, data);
    // Nothing is left in the scratch area whatever happened.
    assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
});
