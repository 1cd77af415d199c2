//! What the managers' orchestration reads: commands as they arrive in Raft entries (from the
//! API, or forwarded by another manager), stored states, and placement constraints as users
//! type them. None may panic — not applying a command, not decoding a state, not a
//! reconciliation pass or the scheduler over whatever state results; a constraint that parses
//! matches or not without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skiff_cluster::types::{ClusterState, Command};
use skiff_manager::orchestrator::reconcile;
use skiff_manager::scheduler::{Constraint, schedule};

fn exercise(state: &ClusterState) {
    let mut n = 0u32;
    let mut ids = || {
        n += 1;
        format!("fz{n}")
    };
    let _ = reconcile(state, 1_000_000_000, &mut ids);
    let _ = schedule(state);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(c) = Constraint::parse(s)
    {
        for n in ClusterState::default().nodes.values() {
            let _ = c.matches(n);
        }
    }
    if let Ok(state) = ClusterState::decode(data) {
        exercise(&state);
    }
    // A stream of commands, one JSON value after another, applied in order.
    let mut state = ClusterState::default();
    for cmd in serde_json::Deserializer::from_slice(data).into_iter::<Command>().take(64) {
        let Ok(cmd) = cmd else { break };
        let _ = state.apply(7, 1_000, &cmd);
    }
    exercise(&state);
});
