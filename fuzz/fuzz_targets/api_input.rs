//! API inputs: query strings, filters, version prefixes, request bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let p = skiff_api::params::Params::parse(Some(s));
    let _ = p.filters();
    let _ = p.int("t");
    let _ = p.bool("all", false);
    let _ = skiff_api::params::parse_filters(s);
    let _ = skiff_api::version::split_version(s);
    let _ = serde_json::from_slice::<bollard_stubs::models::ContainerCreateBody>(data);
    let _ = serde_json::from_slice::<bollard_stubs::models::ExecConfig>(data);
    let _ = serde_json::from_slice::<bollard_stubs::models::ContainerUpdateBody>(data);
});
