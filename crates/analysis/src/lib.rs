//! "Is it the host or the container?" — skiff's answer, from outside the engine: readings of
//! the host ([`host`]: CPU time by kind, runnable tasks, memory, pressure) and of containers
//! through the engine ([`sample`]: their cgroups and their threads' run-queue wait, over a
//! window or an interval), the verdict of `skiff diagnose` ([`verdict`], a pure function of a
//! window, with its thresholds), `skiff top`'s rows ([`sample::top`]) and the Prometheus
//! metrics of `skiffd --metrics-addr` ([`metrics`]). The method is docs/PERFORMANCE-ANALYSIS.md.

pub mod host;
pub mod metrics;
pub mod sample;
pub mod verdict;
