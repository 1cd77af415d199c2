//! skiff-create: the helper `skiff-monitor` runs for each container start and exec (see
//! `skiff_monitor::helper` for its arguments and descriptors). It calls libcontainer, reports
//! `ok <pid>` or `err <message>` on descriptor 3 and exits.

mod create;

use std::os::fd::{FromRawFd, OwnedFd};

use skiff_monitor::helper::{self, Invocation, Job, Stdio};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let inv = match Invocation::from_args(&args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // SAFETY: started by the monitor (`helper::exec`), which put these descriptors here.
    let (result, stdio) =
        unsafe { (OwnedFd::from_raw_fd(helper::FD_RESULT), Stdio::from_fixed_fds(inv.console.clone())) };
    let plan = create::Plan { id: &inv.id, state_root: &inv.state_root, stdio, result };
    match &inv.job {
        Job::Start { bundle, loopback } => create::start_container(plan, bundle, *loopback, inv.size),
        Job::Exec { process } => create::exec_process(plan, process, inv.size),
    }
}
