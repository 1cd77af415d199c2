//! skiff's builder. So far: the Dockerfile parser (`dockerfile`) and the word expansion the
//! planner applies with its ARG/ENV state (`shell`). Both are plain data in, plain data out.

pub mod dockerfile;
pub mod ignore;
pub mod shell;
