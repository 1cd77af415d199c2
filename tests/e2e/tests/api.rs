//! The Engine API directly: version negotiation, errors, hostile input.

use skiff_e2e::{Daemon, require_root};

#[test]
fn versions_and_errors() {
    require_root!();
    let d = Daemon::start_bare();
    let (s, body) = d.http("GET", "/_ping", None);
    assert_eq!((s, body.as_str()), (200, "OK"));
    assert_eq!(d.http("GET", "/v1.44/version", None).0, 200);
    assert_eq!(d.http("GET", "/v1.24/info", None).0, 200);
    let (s, body) = d.http("GET", "/v9.99/version", None);
    assert_eq!(s, 400);
    assert!(body.contains("too new"), "{body}");
    let (s, body) = d.http("GET", "/containers/nope/json", None);
    assert_eq!(s, 404);
    assert!(body.contains("No such container: nope"), "{body}");
    assert_eq!(d.http("GET", "/no/such/endpoint", None).0, 404);
    assert_eq!(d.http("DELETE", "/containers/nope", None).0, 404);
}

#[test]
fn hostile_bodies_are_rejected() {
    require_root!();
    let d = Daemon::start();
    for body in [
        "",
        "{",
        "[]",
        "{\"Image\": 5}",
        "{\"Image\":\"busybox\",\"HostConfig\":{\"Memory\":\"lots\"}}",
        &"[".repeat(100_000),
    ] {
        let (s, resp) = d.http("POST", "/containers/create", Some(body));
        assert_eq!(s, 400, "body {:?} gave {s} {resp}", &body[..body.len().min(40)]);
        assert!(resp.contains("message"), "{resp}");
    }
    let (s, resp) = d.http("POST", "/containers/create?name=a/b", Some("{\"Image\":\"busybox\"}"));
    assert_eq!(s, 400, "{resp}");
    let (s, resp) = d.http(
        "POST",
        "/containers/create",
        Some("{\"Image\":\"busybox\",\"Cmd\":[\"true\"],\"HostConfig\":{\"Binds\":[\"a:b:c:d\"]}}"),
    );
    assert_eq!(s, 400, "{resp}");
    let (s, _) = d.http("POST", "/containers/create", Some("{\"Image\":\"no-such-image\"}"));
    assert_eq!(s, 404);
    let (s, _) = d.http("GET", "/containers/json?filters=%7Bbad", None);
    assert_eq!(s, 400);
    // Name conflicts are 409.
    assert_eq!(
        d.http("POST", "/containers/create?name=dup", Some("{\"Image\":\"busybox\",\"Cmd\":[\"true\"]}")).0,
        201
    );
    assert_eq!(
        d.http("POST", "/containers/create?name=dup", Some("{\"Image\":\"busybox\",\"Cmd\":[\"true\"]}")).0,
        409
    );
}

#[test]
fn hostile_image_archives_are_refused() {
    require_root!();
    let d = Daemon::start_bare();
    let outside = d.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // A layer with a path that climbs out.
    let mut raw = Vec::new();
    let mut h = tar::Header::new_gnu();
    let name = b"../../../../../../tmp/skiff-e2e-escape";
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    raw.extend_from_slice(h.as_bytes());
    raw.extend_from_slice(b"x");
    raw.extend(std::iter::repeat_n(0u8, 511 + 1024));
    let bad = d.dir.join("bad.tar");
    std::fs::write(&bad, &raw).unwrap();
    let o = d.docker(&["import", bad.to_str().unwrap(), "evil"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(!std::path::Path::new("/tmp/skiff-e2e-escape").exists());
    assert_eq!(d.docker(&["images", "-q"]).ok(), "");
    // A truncated gzip.
    let gz = d.dir.join("trunc.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 0x08, 0x00, 0x00]).unwrap();
    assert_ne!(d.docker(&["import", gz.to_str().unwrap(), "trunc"]).code, 0);
    // An archive that is not an image.
    let not = d.dir.join("not-an-image.tar");
    std::fs::write(&not, &raw).unwrap();
    let o = d.docker(&["load", "-i", not.to_str().unwrap()]);
    assert_ne!(o.code, 0, "{o:?}");
    // Nothing half-made is left in the store.
    assert_eq!(d.docker(&["images", "-q"]).ok(), "");
}
