//! Image references: never panic; whatever parses prints back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skiff_image::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse_normalized(s) {
        let full = r.to_string();
        let again = Reference::parse_normalized(&full).expect("a printed reference parses");
        assert_eq!(again.to_string(), full);
        let _ = r.familiar();
    }
    let _ = s.parse::<skiff_image::Digest>();
});
