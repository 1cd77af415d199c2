//! The monitor's wire protocol: frames and requests from a (possibly hostile) peer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skiff_runtime::protocol::{self, Request};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some((kind, payload, used))) = protocol::decode(buf) {
        if kind == protocol::FrameKind::Json {
            let _ = serde_json::from_slice::<Request>(payload);
        }
        buf = &buf[used..];
    }
    let _ = skiff_runtime::logfile::parse_line(data);
    let _ = skiff_runtime::cgroups::Layout::from_mountinfo(&String::from_utf8_lossy(data));
});
