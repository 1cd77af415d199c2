//! Layer tests: round trips, whiteouts, and hostile archives. They run as root (CI does), since
//! restoring owners and creating whiteout devices needs it; as non-root they are skipped.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Builds a tar from (name, kind, data/link) triples using raw headers, so that hostile names
/// the `tar` crate would refuse to write can still be produced.
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let g = h.as_gnu_mut().unwrap();
                g.linkname[..data.len()].copy_from_slice(data);
                h.set_size(0);
            }
            _ => h.set_size(data.len() as u64),
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        if !matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            out.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            out.extend(std::iter::repeat_n(0u8, pad));
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn opts(mode: WhiteoutMode) -> UnpackOptions {
    UnpackOptions { whiteouts: mode, ..Default::default() }
}

#[test]
fn unpacks_files_dirs_links() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = raw_tar(&[
        ("bin/", tar::EntryType::Directory, b""),
        ("bin/busybox", tar::EntryType::Regular, b"ELF"),
        ("bin/sh", tar::EntryType::Symlink, b"/bin/busybox"),
        ("bin/ls", tar::EntryType::Link, b"bin/busybox"),
        ("deep/a/b/c.txt", tar::EntryType::Regular, b"auto parents"),
        ("fifo", tar::EntryType::Fifo, b""),
    ]);
    let st = unpack(&t[..], dir.path(), &opts(WhiteoutMode::Overlay)).unwrap();
    assert_eq!(st.entries, 6);
    let root = dir.path();
    assert_eq!(fs::read(root.join("bin/busybox")).unwrap(), b"ELF");
    assert_eq!(fs::read_link(root.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
    assert_eq!(fs::metadata(root.join("bin/ls")).unwrap().ino(), fs::metadata(root.join("bin/busybox")).unwrap().ino());
    assert_eq!(fs::read(root.join("deep/a/b/c.txt")).unwrap(), b"auto parents");
    assert!(fs::symlink_metadata(root.join("fifo")).unwrap().file_type().is_fifo());
    assert_eq!(fs::metadata(root.join("bin")).unwrap().mtime(), 1_700_000_000);
}

#[test]
fn rejects_parent_dir_paths() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = dir.path().join("root");
    fs::create_dir(&target).unwrap();
    let t = raw_tar(&[("../outside/pwned", tar::EntryType::Regular, b"x")]);
    let e = unpack(&t[..], &target, &opts(WhiteoutMode::Overlay)).unwrap_err();
    assert!(matches!(e, UnpackError::Breakout { .. }), "{e:?}");
    assert!(!outside.join("pwned").exists());
    let t = raw_tar(&[("a/../../outside/pwned", tar::EntryType::Regular, b"x")]);
    assert!(unpack(&t[..], &target, &opts(WhiteoutMode::Overlay)).is_err());
    assert!(!outside.join("pwned").exists());
}

#[test]
fn rooted_dotdot_stays_inside() {
    // A build context's `../foo` is `foo`, as extracting inside a chroot makes it.
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = dir.path().join("root");
    fs::create_dir(&target).unwrap();
    let t = raw_tar(&[
        ("../outside/pwned", tar::EntryType::Regular, b"x"),
        ("a/../../../b", tar::EntryType::Regular, b"y"),
        ("/c", tar::EntryType::Regular, b"z"),
        ("l", tar::EntryType::Link, b"../../c"),
    ]);
    let o = UnpackOptions { rooted_dotdot: true, same_owner: false, ..opts(WhiteoutMode::Literal) };
    unpack(&t[..], &target, &o).unwrap();
    assert!(!outside.join("pwned").exists());
    assert_eq!(fs::read(target.join("outside/pwned")).unwrap(), b"x");
    assert_eq!(fs::read(target.join("b")).unwrap(), b"y");
    assert_eq!(fs::read(target.join("l")).unwrap(), b"z");
}

#[test]
fn absolute_paths_stay_inside() {
    let dir = tempfile::tempdir().unwrap();
    let t = raw_tar(&[("/etc/skiff-test-abs", tar::EntryType::Regular, b"x")]);
    unpack(&t[..], dir.path(), &UnpackOptions { same_owner: is_root(), ..opts(WhiteoutMode::Overlay) }).unwrap();
    assert!(dir.path().join("etc/skiff-test-abs").exists());
    assert!(!Path::new("/etc/skiff-test-abs").exists());
}

#[test]
fn symlink_parents_cannot_escape() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = dir.path().join("root");
    fs::create_dir(&target).unwrap();
    // An absolute symlink is legal, but writing through it must land inside the root.
    let abs = outside.to_str().unwrap().as_bytes().to_vec();
    let t = raw_tar(&[("escape", tar::EntryType::Symlink, &abs), ("escape/pwned", tar::EntryType::Regular, b"x")]);
    let o = UnpackOptions { same_owner: is_root(), ..opts(WhiteoutMode::Overlay) };
    // The link dangles inside the root, so the write fails (as it does for Docker)...
    assert!(unpack(&t[..], &target, &o).is_err());
    assert!(!outside.join("pwned").exists(), "wrote through an absolute symlink");
    // ...and once its target exists inside the root, the write lands there.
    let inner = outside.strip_prefix("/").unwrap().to_str().unwrap().to_string() + "/";
    let t = raw_tar(&[
        (inner.as_str(), tar::EntryType::Directory, b""),
        ("escape", tar::EntryType::Symlink, &abs),
        ("escape/pwned", tar::EntryType::Regular, b"x"),
    ]);
    unpack(&t[..], &target, &o).unwrap();
    assert!(!outside.join("pwned").exists(), "wrote through an absolute symlink");
    assert!(target.join(&inner).join("pwned").exists(), "expected the write to resolve inside the root");
}

#[test]
fn climbing_relative_symlinks_are_kept_and_resolve_inside() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = dir.path().join("root");
    fs::create_dir(&target).unwrap();
    let o = UnpackOptions { same_owner: is_root(), ..opts(WhiteoutMode::Overlay) };
    // Real images ship links like this one (it climbs above the root from a/).
    let t = raw_tar(&[("a/link", tar::EntryType::Symlink, b"../../outside")]);
    unpack(&t[..], &target, &o).unwrap();
    assert_eq!(fs::read_link(target.join("a/link")).unwrap(), Path::new("../../outside"));
    // Writing through it resolves as in a chroot: `..` stops at the root.
    let t = raw_tar(&[("outside/", tar::EntryType::Directory, b""), ("a/link/pwned", tar::EntryType::Regular, b"x")]);
    unpack(&t[..], &target, &o).unwrap();
    assert!(!outside.join("pwned").exists(), "wrote outside the root");
    assert!(target.join("outside/pwned").exists());
}

#[test]
fn sparse_entries_stay_sparse() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    // A GNU sparse entry: 256 MiB apparent, one 512-byte block of data at 128 MiB.
    let real: u64 = 256 << 20;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_path("big").unwrap();
    h.set_mode(0o644);
    h.set_size(512);
    let g = h.as_gnu_mut().unwrap();
    g.sparse[0].offset = octal12(128 << 20);
    g.sparse[0].numbytes = octal12(512);
    g.sparse[1].offset = octal12(real); // the hole runs to the end
    g.sparse[1].numbytes = octal12(0);
    g.realsize = octal12(real);
    h.set_cksum();
    let mut t = h.as_bytes().to_vec();
    t.extend_from_slice(&[7u8; 512]);
    t.extend_from_slice(&[0u8; 1024]);
    let st = unpack(&t[..], dir.path(), &opts(WhiteoutMode::Overlay)).unwrap();
    assert_eq!(st.bytes, real);
    let m = fs::metadata(dir.path().join("big")).unwrap();
    assert_eq!(m.len(), real);
    assert!(m.blocks() * 512 < 1 << 20, "holes were written as zeros: {} blocks", m.blocks());
    // A limit on unpacked bytes refuses it, with the limit in the error.
    let e = unpack(
        &t[..],
        &dir.path().join("limited"),
        &UnpackOptions { max_bytes: Some(1 << 20), ..opts(WhiteoutMode::Overlay) },
    );
    assert!(e.is_err());
    fs::create_dir(dir.path().join("limited")).unwrap();
    let e = unpack(
        &t[..],
        &dir.path().join("limited"),
        &UnpackOptions { max_bytes: Some(1 << 20), ..opts(WhiteoutMode::Overlay) },
    )
    .unwrap_err();
    assert!(matches!(e, UnpackError::TooLarge { limit } if limit == 1 << 20), "{e:?}");
}

fn octal12(v: u64) -> [u8; 12] {
    let s = format!("{v:011o}\0");
    s.as_bytes().try_into().unwrap()
}

#[test]
fn oversized_metadata_entries_are_refused_without_reading_them() {
    // A long-name entry that claims 4 GiB, followed by an endless stream: the guard must fail
    // at the header, not buffer the name.
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_size(4 << 30);
    h.set_cksum();
    let endless = io::repeat(b'a');
    let r = io::Read::chain(&h.as_bytes()[..], endless);
    let dir = tempfile::tempdir().unwrap();
    let e = unpack(r, dir.path(), &opts(WhiteoutMode::Overlay)).unwrap_err();
    assert!(e.to_string().contains("metadata") || format!("{e:?}").contains("metadata"), "{e:?}");
    // The same with a PAX header.
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/x").unwrap();
    h.set_size(2 << 20);
    h.set_cksum();
    let r = io::Read::chain(&h.as_bytes()[..], io::repeat(b'1'));
    assert!(unpack(r, dir.path(), &opts(WhiteoutMode::Overlay)).is_err());
}

#[test]
fn the_guard_frames_like_the_parser() {
    // Long names, PAX records (with a size override), hard links and a large file: the guard
    // passes every byte and the archive reads the same through it.
    let mut b = tar::Builder::new(Vec::new());
    let long = format!("{}file", "d/".repeat(150));
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(3);
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    b.append_pax_extensions([("size", &b"5"[..]), ("user.x", &b"y"[..])]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(0); // the PAX size (5) wins
    h.set_path("paxsized").unwrap();
    h.set_cksum();
    b.append(&h, &b"hello"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(1 << 16);
    b.append_data(&mut h, "big", &vec![9u8; 1 << 16][..]).unwrap();
    let bytes = b.into_inner().unwrap();
    let mut through = Vec::new();
    io::Read::read_to_end(&mut crate::layer::TarGuard::new(&bytes[..]), &mut through).unwrap();
    assert_eq!(through, bytes);
    let dir = tempfile::tempdir().unwrap();
    unpack(&bytes[..], dir.path(), &opts(WhiteoutMode::Overlay)).unwrap();
    assert_eq!(fs::read(dir.path().join(&long)).unwrap(), b"abc");
    assert_eq!(fs::read(dir.path().join("paxsized")).unwrap(), b"hello");
    assert_eq!(fs::read(dir.path().join("big")).unwrap().len(), 1 << 16);
}

#[test]
fn paths_longer_than_path_max_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let long = "d/".repeat(2100) + "f";
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, &b"x"[..]).unwrap();
    let t = b.into_inner().unwrap();
    let e = unpack(&t[..], dir.path(), &opts(WhiteoutMode::Overlay)).unwrap_err();
    assert!(matches!(e, UnpackError::TooLong(n) if n == long.len()), "{e:?}");
}

#[test]
fn deep_trees_pack_to_the_path_limit_and_no_further() {
    use skiff_common::tree;
    use std::ffi::OsStr;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("deep");
    fs::create_dir(&root).unwrap();
    // 2,047 levels of "d/" stay within 4,095 bytes; the tree goes on to 3,000.
    let mut fd = tree::open_dir(&root).unwrap();
    for _ in 0..3000 {
        rustix::fs::mkdirat(&fd, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        fd = tree::open_dir_at(&fd, OsStr::new("d")).unwrap();
    }
    let e = pack_overlay_diff(&root, Vec::new(), &[]).unwrap_err();
    assert!(e.to_string().contains("PATH_MAX"), "{e}");
    let e = overlay_changes(&root, &|_| false, &[]).unwrap_err();
    assert!(e.to_string().contains("PATH_MAX"), "{e}");
    // Cut it to 2,000 levels: everything works, and it unpacks back the same.
    let mut fd = tree::open_dir(&root).unwrap();
    for _ in 0..2000 {
        fd = tree::open_dir_at(&fd, OsStr::new("d")).unwrap();
    }
    tree::remove_at(&fd, OsStr::new("d")).unwrap();
    let packed = pack_overlay_diff(&root, Vec::new(), &[]).unwrap();
    assert_eq!(overlay_changes(&root, &|_| false, &[]).unwrap().len(), 2000);
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    unpack(&packed[..], &out, &opts(WhiteoutMode::Overlay)).unwrap();
    assert_eq!(pack_overlay_diff(&out, Vec::new(), &[]).unwrap(), packed);
    tree::remove_all(&root).unwrap();
    tree::remove_all(&out).unwrap();
}

#[test]
fn rejects_escaping_hardlinks() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("root");
    fs::create_dir(&target).unwrap();
    let t = raw_tar(&[("passwd", tar::EntryType::Link, b"../../../../etc/passwd")]);
    let e = unpack(&t[..], &target, &opts(WhiteoutMode::Overlay)).unwrap_err();
    assert!(matches!(e, UnpackError::Breakout { .. }), "{e:?}");
    // An absolute hard link target names a path inside the archive; missing → error.
    let t = raw_tar(&[("passwd", tar::EntryType::Link, b"/etc/passwd")]);
    let e = unpack(&t[..], &target, &opts(WhiteoutMode::Overlay)).unwrap_err();
    assert!(matches!(e, UnpackError::BadHardlink { .. }), "{e:?}");
    assert!(!target.join("passwd").exists());
}

#[test]
fn hardlink_through_symlink_stays_inside() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("root");
    fs::create_dir(&target).unwrap();
    let t = raw_tar(&[("etc", tar::EntryType::Symlink, b"/etc"), ("stolen", tar::EntryType::Link, b"etc/hostname")]);
    assert!(unpack(&t[..], &target, &opts(WhiteoutMode::Overlay)).is_err());
    assert!(!target.join("stolen").exists());
}

#[test]
fn refuses_devices_outside_dev() {
    let dir = tempfile::tempdir().unwrap();
    let t = raw_tar(&[("sda", tar::EntryType::Block, b"")]);
    let e = unpack(&t[..], dir.path(), &opts(WhiteoutMode::Overlay)).unwrap_err();
    assert!(matches!(e, UnpackError::Device(_)), "{e:?}");
    let t = raw_tar(&[("dev/null", tar::EntryType::Char, b"")]);
    unpack(&t[..], dir.path(), &UnpackOptions { same_owner: is_root(), ..opts(WhiteoutMode::Overlay) }).unwrap();
    assert!(!dir.path().join("dev/null").exists());
}

#[test]
fn truncated_and_garbage_archives_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let t = raw_tar(&[("big", tar::EntryType::Regular, &[7u8; 5000])]);
    assert!(unpack(&t[..1500], dir.path(), &opts(WhiteoutMode::Overlay)).is_err());
    let garbage = vec![0xffu8; 2048];
    assert!(unpack(&garbage[..], dir.path(), &opts(WhiteoutMode::Overlay)).is_err());
}

#[test]
fn whiteouts_overlay_and_apply() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lower = raw_tar(&[
        ("d/", tar::EntryType::Directory, b""),
        ("d/old", tar::EntryType::Regular, b"1"),
        ("gone", tar::EntryType::Regular, b"1"),
        ("keep", tar::EntryType::Regular, b"1"),
    ]);
    let upper = raw_tar(&[
        ("d/", tar::EntryType::Directory, b""),
        ("d/.wh..wh..opq", tar::EntryType::Regular, b""),
        ("d/new", tar::EntryType::Regular, b"2"),
        (".wh.gone", tar::EntryType::Regular, b""),
    ]);
    // Apply: one tree.
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    unpack(&lower[..], &tree, &opts(WhiteoutMode::Apply)).unwrap();
    unpack(&upper[..], &tree, &opts(WhiteoutMode::Apply)).unwrap();
    assert!(!tree.join("gone").exists());
    assert!(!tree.join("d/old").exists());
    assert!(tree.join("d/new").exists());
    assert!(tree.join("keep").exists());
    // Overlay: markers in the layer dir.
    let layer = dir.path().join("layer");
    fs::create_dir(&layer).unwrap();
    unpack(&upper[..], &layer, &opts(WhiteoutMode::Overlay)).unwrap();
    let m = fs::symlink_metadata(layer.join("gone")).unwrap();
    assert!(m.file_type().is_char_device() && m.rdev() == 0);
    let mut v = [0u8; 4];
    let n = rustix::fs::lgetxattr(layer.join("d").as_path(), OVERLAY_OPAQUE_XATTR, &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"y");
    // And back: the overlay dir packs to the same whiteouts.
    let packed = pack_overlay_diff(&layer, Vec::new(), &[]).unwrap();
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(&packed[..]);
    for e in ar.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(names, vec!["d/", "d/.wh..wh..opq", "d/new", ".wh.gone"]);
}

#[test]
fn pack_round_trip_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("a/b")).unwrap();
    fs::write(src.join("a/b/f"), b"data").unwrap();
    fs::set_permissions(src.join("a/b/f"), fs::Permissions::from_mode(0o4755)).unwrap();
    std::os::unix::fs::symlink("b/f", src.join("a/l")).unwrap();
    fs::hard_link(src.join("a/b/f"), src.join("a/h")).unwrap();
    let pack = |p: &Path| {
        let mut tw = TarWriter::new(Vec::new());
        tw.append_tree(p, Path::new("")).unwrap();
        tw.finish().unwrap()
    };
    let one = pack(&src);
    assert_eq!(one, pack(&src));
    let dst = dir.path().join("dst");
    fs::create_dir(&dst).unwrap();
    unpack(&one[..], &dst, &UnpackOptions { same_owner: is_root(), ..opts(WhiteoutMode::Apply) }).unwrap();
    let mut s = String::new();
    fs::File::open(dst.join("a/h")).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "data");
    assert_eq!(fs::metadata(dst.join("a/b/f")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(fs::read_link(dst.join("a/l")).unwrap(), Path::new("b/f"));
    assert_eq!(pack(&dst), one);
}

#[test]
fn a_stream_cut_after_the_last_entrys_data_ends_there_as_with_go() {
    // What the docker CLI sends when it adds an outside Dockerfile to a build context: the
    // last entry's padding and the end-of-archive marker are missing.
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("a", &b"first"[..]), (".dockerignore", &b"Dockerfile\n.dockerignore\n"[..])] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    let full = b.into_inner().unwrap();
    let cut = &full[..512 + 512 + 512 + 26];
    let dir = tempfile::tempdir().unwrap();
    unpack(cut, dir.path(), &opts(WhiteoutMode::Literal)).unwrap();
    assert_eq!(fs::read(dir.path().join(".dockerignore")).unwrap(), b"Dockerfile\n.dockerignore\n");
    // Cut inside the data, it is still an error (no file is made up).
    let short = &full[..512 + 512 + 512 + 10];
    let other = tempfile::tempdir().unwrap();
    assert!(unpack(short, other.path(), &opts(WhiteoutMode::Literal)).is_err());
}
