//! skiff-image: everything about images that does not involve running them.
//!
//! References and digests, the content store (blobs by digest), image formats (OCI and Docker
//! manifests, indexes, configs), layers (safe unpack with whiteouts, tar writing, diffs), the
//! layer store and container snapshots (overlayfs, or copying where overlay is unavailable),
//! the image store (images and tags), and docker-archive / OCI layout archives.
//! It knows nothing of HTTP, containers or registries.

pub mod archive;
pub mod content;
pub mod db;
pub mod digest;
pub mod layer;
pub mod layers;
pub mod reference;
pub mod snapshot;
pub mod spec;
pub mod store;

pub use digest::Digest;
pub use reference::Reference;
pub use store::{Image, ImageError, ImageStore, NewLayer};

pub use skiff_common::{fsutil, timefmt};
