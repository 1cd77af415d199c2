//! Golden files: each `tests/golden/NAME.Dockerfile` parses to exactly `NAME.parsed` (the
//! parser's data, pretty-printed). `UPDATE_GOLDEN=1 cargo test -p skiff-build` rewrites them;
//! review the diff.

use std::path::Path;

#[test]
fn golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "Dockerfile") {
            continue;
        }
        n += 1;
        let src = std::fs::read_to_string(&p).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let got = match skiff_build::dockerfile::parse(&src, &name) {
            Ok(d) => format!("{d:#?}\n"),
            Err(e) => format!("error: {e}\n"),
        };
        let want_path = p.with_extension("parsed");
        if update {
            std::fs::write(&want_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&want_path).unwrap_or_else(|_| panic!("missing {}", want_path.display()));
        assert_eq!(got, want, "{name} parses differently from {}", want_path.display());
    }
    assert!(n >= 5, "golden files found: {n}");
}
