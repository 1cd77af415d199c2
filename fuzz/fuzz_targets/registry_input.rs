//! What a registry server and client read from the network or config files: request paths,
//! repository names, Range / Content-Range, manifests, token scopes, htpasswd, auth challenges,
//! X-Registry-Auth headers, registries.toml, Locations. Never panic; names that validate can
//! never climb out of a directory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skiff_distribution::{auth as cauth, client, config as dconfig};
use skiff_registry::{auth, manifest, names, server};

fuzz_target!(|data: &[u8]| {
    let _ = manifest::parse(data, None);
    let _ = manifest::parse(data, Some(manifest::OCI_INDEX));
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some(server::Route::Tags(n) | server::Route::Manifest(n, _) | server::Route::Blob(n, _)) = server::route(s)
        && names::valid_name(&n)
    {
        assert!(!n.split('/').any(|c| c == ".." || c == "." || c.is_empty() || c.starts_with('_')));
    }
    if names::valid_tag(s) {
        assert!(!s.contains('/') && s != "." && s != "..");
    }
    if let Some((a, b)) = server::parse_range(s, 1000) {
        assert!(a <= b && b < 1000);
    }
    if let Some((a, b)) = server::parse_content_range(s) {
        assert!(a <= b);
    }
    let _ = auth::parse_scope(s);
    let _ = auth::parse_htpasswd(s);
    let _ = skiff_registry::Config::from_toml(s);
    let _ = cauth::parse_challenge(s);
    let _ = cauth::Credentials::from_header(s);
    let _ = dconfig::RegistriesConfig::from_toml(s).map(|c| c.endpoints("docker.io", "library/x", false));
    let _ = dconfig::is_loopback_host(s);
    let _ = client::error_message(data);
    let (a, b) = s.split_once('\n').unwrap_or((s, ""));
    let _ = client::resolve_url(a, b);
});
