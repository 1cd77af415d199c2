//! `mkdeep DIR DEPTH`: makes a chain of DEPTH directories named `d` under DIR (created if
//! missing), with descriptor-relative calls only, so the chain may go far past PATH_MAX; a
//! small file `f` sits at the bottom. Run inside containers by the hardening tests (a shell's
//! `cd` stops at PATH_MAX).

use std::ffi::OsStr;

use rustix::fs::{Mode, OFlags};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(depth)) = (args.get(1), args.get(2).and_then(|d| d.parse::<usize>().ok())) else {
        eprintln!("usage: mkdeep DIR DEPTH");
        std::process::exit(2);
    };
    std::fs::create_dir_all(dir).expect("creating DIR");
    let open = |at: &rustix::fd::OwnedFd, name: &OsStr| {
        rustix::fs::openat(at, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW, Mode::empty())
    };
    let mut fd =
        rustix::fs::open(dir.as_str(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("opening DIR");
    for i in 0..depth {
        match rustix::fs::mkdirat(&fd, "d", Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => panic!("mkdir at depth {i}: {e}"),
        }
        fd = open(&fd, OsStr::new("d")).unwrap_or_else(|e| panic!("open at depth {i}: {e}"));
    }
    let f = rustix::fs::openat(&fd, "f", OFlags::WRONLY | OFlags::CREATE, Mode::from_raw_mode(0o644)).expect("f");
    rustix::io::write(&f, b"bottom\n").expect("write f");
    println!("made {depth} levels");
}
