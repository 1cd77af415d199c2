//! The front end: the Dockerfile parser, word expansion, .dockerignore matching and the build
//! plan. Plain data in, plain data out.

pub mod dockerfile;
pub mod ignore;
pub mod plan;
pub mod shell;
