//! skiff's registry client: pull and push images over the OCI distribution API.
//!
//! `config` maps a reference to endpoints (mirrors, prefix remaps, insecure registries);
//! `client` talks to one endpoint (scheme, auth challenges, redirects); `pull` and `push` move
//! images between a registry and the local image store, verifying every digest before content
//! becomes visible, with progress events for the API's JSON stream.

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod progress;
pub mod pull;
pub mod push;

pub use auth::Credentials;
pub use config::RegistriesConfig;
pub use error::DistError;
pub use progress::{Progress, Sink};
