//! `docker update`: resource limits and the restart policy.

use std::sync::Arc;

use bollard_stubs::models::RestartPolicyNameEnum;
use skiff_image::db::Durability;

use super::Containers;
use crate::error::{EngineError, Result};

impl Containers {
    /// `docker update`: new resource limits and restart policy, applied to the running
    /// container's cgroups and kept for later starts.
    pub async fn update_resources(
        self: &Arc<Self>,
        key: &str,
        u: bollard_stubs::models::ContainerUpdateBody,
    ) -> Result<Vec<String>> {
        let c = self.get(key)?;
        let _op = c.ops.lock().await;
        let rec = c.record();
        let mut hc = rec.host_config.clone();
        // As in Docker, zero (and empty) means "leave as it is": clients send every field.
        let mut u = u;
        let nz = |v: Option<i64>| v.filter(|x| *x != 0);
        u.memory = nz(u.memory);
        u.memory_swap = nz(u.memory_swap);
        u.memory_reservation = nz(u.memory_reservation);
        u.cpu_shares = nz(u.cpu_shares);
        u.nano_cpus = nz(u.nano_cpus);
        u.cpu_quota = nz(u.cpu_quota);
        u.cpu_period = nz(u.cpu_period);
        u.blkio_weight = u.blkio_weight.filter(|w| *w != 0);
        u.cpuset_cpus = u.cpuset_cpus.filter(|c| !c.is_empty());
        u.cpuset_mems = u.cpuset_mems.filter(|c| !c.is_empty());
        if u.restart_policy.as_ref().is_some_and(|p| matches!(p.name, None | Some(RestartPolicyNameEnum::EMPTY))) {
            u.restart_policy = None;
        }
        if let Some(m) = u.memory {
            if m > 0 && m < 6 * 1024 * 1024 {
                return Err(EngineError::invalid("Minimum memory limit allowed is 6MB"));
            }
            hc.memory = Some(m);
        }
        if let Some(s) = u.memory_swap {
            hc.memory_swap = Some(s);
        }
        if let (Some(m), Some(s)) = (hc.memory.filter(|m| *m > 0), hc.memory_swap.filter(|s| *s > 0))
            && s < m
        {
            return Err(EngineError::invalid("Minimum memoryswap limit should be larger than memory limit, see usage"));
        }
        if u.memory.is_some() && u.memory_swap.is_none() && rec.host_config.memory_swap.unwrap_or(0) > 0 {
            // Docker keeps the ratio sane: a new memory limit above the old swap limit grows swap.
            if hc.memory.unwrap_or(0) > hc.memory_swap.unwrap_or(0) {
                hc.memory_swap = hc.memory.map(|m| m * 2);
            }
        }
        if let Some(v) = u.memory_reservation {
            hc.memory_reservation = Some(v);
        }
        if let Some(v) = u.cpu_shares {
            hc.cpu_shares = Some(v);
        }
        if let Some(v) = u.nano_cpus {
            hc.nano_cpus = Some(v);
        }
        if let Some(v) = u.cpu_quota {
            hc.cpu_quota = Some(v);
        }
        if let Some(v) = u.cpu_period {
            hc.cpu_period = Some(v);
        }
        if let Some(v) = u.cpuset_cpus.clone() {
            hc.cpuset_cpus = Some(v);
        }
        if let Some(v) = u.cpuset_mems.clone() {
            hc.cpuset_mems = Some(v);
        }
        if let Some(v) = u.pids_limit {
            // 0 and any negative value mean "unlimited", recorded as 0 (as dockerd does).
            hc.pids_limit = Some(v.max(0));
        }
        if let Some(v) = u.blkio_weight {
            hc.blkio_weight = Some(v);
        }
        if let Some(p) = u.restart_policy.clone() {
            if hc.auto_remove == Some(true)
                && !matches!(p.name, None | Some(RestartPolicyNameEnum::NO) | Some(RestartPolicyNameEnum::EMPTY))
            {
                return Err(EngineError::invalid(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container",
                ));
            }
            hc.restart_policy = Some(p);
        }
        if rec.state.status.is_live() {
            let mut up = skiff_runtime::cgroups::Update {
                memory: u.memory,
                memory_swap: if u.memory.is_some() || u.memory_swap.is_some() {
                    Some(match hc.memory_swap {
                        Some(-1) => -1,
                        Some(s) if s > 0 => s,
                        _ => hc.memory.unwrap_or(0) * 2,
                    })
                } else {
                    None
                },
                memory_reservation: u.memory_reservation,
                cpu_shares: u.cpu_shares.map(|s| s.max(0) as u64),
                cpu_quota: u.cpu_quota,
                cpu_period: u.cpu_period.map(|p| p.max(0) as u64),
                cpuset_cpus: u.cpuset_cpus.clone(),
                cpuset_mems: u.cpuset_mems.clone(),
                pids_limit: u.pids_limit,
                blkio_weight: u.blkio_weight,
            };
            if let Some(n) = u.nano_cpus {
                up.cpu_period = Some(100_000);
                up.cpu_quota = Some(if n > 0 { (n as i128 * 100_000 / 1_000_000_000) as i64 } else { -1 });
            }
            self.layout
                .update(&format!("/skiff/{}", c.id), &up)
                .map_err(|e| EngineError::invalid(format!("Cannot update container {}: {e}", c.id)))?;
        }
        let rec = self.update(&c, Durability::Sync, |r| r.host_config = hc)?;
        self.publish(&rec, "update");
        Ok(vec![])
    }
}
