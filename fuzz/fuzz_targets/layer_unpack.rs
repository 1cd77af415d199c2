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
    // The guard under the parser passes bytes through unchanged, or refuses; the one thing it
    // adds is the zeros of a stream cut right after an entry's data (padding and end marker, as
    // Go's reader tolerates).
    let mut through = Vec::new();
    if std::io::Read::read_to_end(&mut layer::TarGuard::new(data), &mut through).is_ok() {
        assert!(through.starts_with(data), "the tar guard changed the stream");
        assert!(through[data.len()..].iter().all(|b| *b == 0), "the tar guard added more than zeros");
    }
    for (mode, max) in [(WhiteoutMode::Overlay, None), (WhiteoutMode::Apply, Some(4096))] {
        if let Ok((_, r)) = layer::decompress(data) {
            let opts =
                UnpackOptions { whiteouts: mode, devices: DevicePolicy::Reject, max_bytes: max, ..Default::default() };
            let _ = layer::unpack(r, &target, &opts);
        }
    }
    // What was unpacked packs again and lists its changes (the walks) without a panic.
    let _ = layer::pack_overlay_diff(&target, Vec::new(), &[]);
    let _ = layer::overlay_changes(&target, &|_| false, &[]);
    let escaped = std::fs::read_dir(&sentinel).unwrap().count();
    assert_eq!(escaped, 0, "an archive wrote outside its target");
    let parent_entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(parent_entries.len(), 2, "an archive created {parent_entries:?} next to its target");
});
