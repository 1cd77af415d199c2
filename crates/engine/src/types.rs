//! The types of the engine's public surface that its lower crates define: what callers (the
//! API) name without depending on those crates. Re-exported, not copied, so there is one of
//! each.

/// Image references (`busybox`, `host:5000/app:v1@sha256:…`).
pub use skiff_image::Reference;
/// An image platform (`linux/amd64`).
pub use skiff_image::spec::Platform;

/// Registry credentials (`X-Registry-Auth`) and pull/push progress.
pub use skiff_distribution::{Credentials, Progress, Sink};

/// Which output stream a log entry or an attached chunk belongs to.
pub use skiff_runtime::logfile::Stream;
/// The standard streams an attach asks for.
pub use skiff_runtime::protocol::Streams;

/// What a `docker load` brought in; what a `docker save` writes.
pub use skiff_image::archive::{LoadResult, SaveItem};
