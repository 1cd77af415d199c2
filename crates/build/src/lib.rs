//! skiff's builder, as Docker's classic builder behaves: the front end (`frontend`: the
//! Dockerfile parser, word expansion, .dockerignore, the plan of stages) and the executor
//! (`exec`: steps, COPY/ADD, RUN, the cache), which reaches images and containers only
//! through the [`Worker`] trait the daemon implements.

pub mod error;
pub mod exec;
pub mod frontend;
pub mod worker;

pub use error::{BuildError, ErrorKind, Result};
pub use exec::{BuildOut, BuildRequest, Builder, Out};
pub use frontend::{dockerfile, ignore, shell};
pub use worker::{ImageInfo, Mounted, RunLimits, RunSpec, Worker};
