//! API inputs: query strings, filters, version prefixes, request bodies, log options, mount
//! specifications, security options, wait conditions, sizes, durations; stored container
//! records.
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
    let _ = p.terminal_size();
    let _ = p.repo_tag();
    // Go durations (healthchecks, `since`/`until`), and container records as stored (a
    // damaged one must be an error, never a crash).
    let _ = skiff_common::units::parse_go_duration(s);
    let _ = skiff_engine::container::logs::parse_time(s);
    let _ = skiff_engine::container::record::decode(data);
    let _ = serde_json::from_slice::<bollard_stubs::models::ContainerCreateBody>(data);
    let _ = serde_json::from_slice::<bollard_stubs::models::ExecConfig>(data);
    let _ = serde_json::from_slice::<bollard_stubs::models::ContainerUpdateBody>(data);
    // `--log-opt`s as a create body carries them: sizes, counts, tag templates.
    use skiff_engine::container::logopts::{TagFields, log_attrs, log_rotation, render_tag};
    let (k, v) = s.split_once('=').unwrap_or(("tag", s));
    let hc = bollard_stubs::models::HostConfig {
        log_config: Some(bollard_stubs::models::HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some([(k.to_string(), v.to_string())].into_iter().collect()),
        }),
        ..Default::default()
    };
    let _ = log_rotation(&hc);
    let _ = render_tag(s, &TagFields::default());
    let _ = log_attrs(&hc, None, &[s.to_string()], &TagFields::default());
    let _ = skiff_engine::container::stats::parse_net_dev(s);
    // `-v`, `--tmpfs` and `--mount` specifications.
    use skiff_engine::container::mounts::{parse_bind, parse_mount, parse_tmpfs, read_only_recursion};
    if let Ok(m) = parse_bind(s) {
        let _ = read_only_recursion(&m, true);
    }
    let (dest, opts) = s.split_once(':').unwrap_or((s, ""));
    let _ = parse_tmpfs(dest, opts);
    if let Ok(m) = serde_json::from_slice::<bollard_stubs::models::Mount>(data)
        && let Ok(m) = parse_mount(&m)
    {
        let _ = read_only_recursion(&m, false);
    }
    // `--security-opt`s, one per line, and wait conditions.
    let opts: Vec<String> = s.lines().map(String::from).collect();
    let _ = skiff_engine::container::secopts::SecurityOpts::parse(&opts);
    let _ = s.parse::<skiff_engine::container::WaitCondition>();
    let _ = skiff_common::units::from_human_size(s);
    let _ = skiff_common::units::ram_in_bytes(s);
});
