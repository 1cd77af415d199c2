//! Looking inside a container's root filesystem from the host: the path-safe helpers live in
//! `skiff_common::rootfs` (the builder uses them too); here their errors become the engine's.

use std::path::Path;

pub use skiff_common::rootfs::{ResolvedUser, mkdir_all, open_in, read_file, resolve};

use crate::error::{EngineError, Result};

/// Docker's rules: `user[:group]`, each a name or a number; names must exist, numbers need not.
pub fn resolve_user(rootfs: &Path, spec: &str, group_add: &[String]) -> Result<ResolvedUser> {
    skiff_common::rootfs::resolve_user(rootfs, spec, group_add).map_err(|e| EngineError::invalid(e.0))
}
