//! Manifests, indexes, image configs and seccomp profiles from untrusted bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skiff_image::spec::{ImageConfig, Index, Manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = ImageConfig::parse(data) {
        // A config we accept serializes and parses again.
        let again = ImageConfig::parse(&c.to_bytes()).expect("reparse");
        assert_eq!(again.rootfs.diff_ids, c.rootfs.diff_ids);
    }
    let _ = Manifest::parse(data);
    let _ = Index::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = skiff_engine::security::seccomp::Profile::parse(s) {
            let _ = p.resolve(&Default::default());
        }
    }
});
