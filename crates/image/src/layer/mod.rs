//! Layers: tar streams in and out of directories, with whiteouts and path safety.

pub mod compress;
pub mod guard;
pub mod pack;
pub mod pgzip;
pub mod unpack;

pub use compress::{Compression, decompress};
pub use guard::TarGuard;
pub use pack::{Change, TarWriter, overlay_changes, pack_overlay_diff};
pub use unpack::{DevicePolicy, UnpackError, UnpackOptions, UnpackStats, WhiteoutMode, unpack};

/// Prefix of a whiteout entry: `.wh.NAME` deletes NAME from the layers below.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Marks its directory opaque: nothing below shows through.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// The xattr overlayfs reads to make a directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[cfg(test)]
mod tests;
