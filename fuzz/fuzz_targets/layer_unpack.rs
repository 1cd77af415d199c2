//! Layer tars (plain, gzip, zstd): never panic, never write outside the target directory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skiff_image::layer::{self, DevicePolicy, UnpackOptions, WhiteoutMode};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("root");
    let sentinel = dir.path().join("outside");
    std::fs::create_dir(&target).unwrap();
    std::fs::create_dir(&sentinel).unwrap();
    for mode in [WhiteoutMode::Overlay, WhiteoutMode::Apply] {
        if let Ok((_, r)) = layer::decompress(data) {
            let opts = UnpackOptions { whiteouts: mode, devices: DevicePolicy::Reject, ..Default::default() };
            let _ = layer::unpack(r, &target, &opts);
        }
    }
    let escaped = std::fs::read_dir(&sentinel).unwrap().count();
    assert_eq!(escaped, 0, "an archive wrote outside its target");
    let parent_entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(parent_entries.len(), 2, "an archive created {parent_entries:?} next to its target");
});
