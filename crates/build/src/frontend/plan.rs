//! The build plan, computed from the Dockerfile and the request before anything runs: global
//! ARG values, the target stage, which stages it needs and in what order (waves of stages that
//! do not depend on each other), and the step numbers the output shows. Pure: no worker.

use std::collections::BTreeMap;

use super::dockerfile::{Dockerfile, Instruction};
use super::shell;
use crate::error::{Result, invalid};

/// Build args every build defines (the host is the only platform).
pub const PREDEFINED_ARGS: [(&str, &str); 6] = [
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// ARGs declared before the first FROM, with their values (`--build-arg` over default).
    pub global: BTreeMap<String, Option<String>>,
    /// The stage whose image is the result.
    pub target: usize,
    /// Per stage: whether the build runs it (every stage up to the target, as the classic
    /// builder does, and what they depend on).
    pub needed: Vec<bool>,
    /// Per stage: the earlier stages it reads (`FROM`, `COPY --from`, `RUN --mount from=`).
    pub deps: Vec<Vec<usize>>,
    /// Per stage: the number of its `FROM` step; steps are numbered per stage so the output
    /// stays readable when stages run together.
    pub first_step: Vec<usize>,
    /// Steps in all needed stages.
    pub total: usize,
}

/// The index of the stage `name` names (its `AS` name, case-insensitively, or its number).
pub fn stage_index(df: &Dockerfile, name: &str) -> Option<usize> {
    let n = name.to_ascii_lowercase();
    df.stages
        .iter()
        .position(|s| s.name.as_deref() == Some(&n))
        .or_else(|| n.parse::<usize>().ok().filter(|i| *i < df.stages.len()))
}

impl Plan {
    pub fn new(df: &Dockerfile, build_args: &BTreeMap<String, String>, target: Option<&str>) -> Result<Plan> {
        let esc = df.directives.escape;
        if df.stages.is_empty() {
            return Err(invalid("the Dockerfile has no FROM"));
        }
        let mut global: BTreeMap<String, Option<String>> = BTreeMap::new();
        for a in &df.global_args {
            let lookup = |k: &str| global.get(k).cloned().flatten();
            let def = match &a.value.default {
                Some(d) => Some(shell::expand(d, esc, &lookup).map_err(|e| invalid(e.0))?),
                None => None,
            };
            let v = build_args.get(&a.value.name).cloned().or(def);
            global.insert(a.value.name.clone(), v);
        }
        let mut plan = Plan {
            global,
            target: 0,
            needed: vec![false; df.stages.len()],
            deps: vec![Vec::new(); df.stages.len()],
            first_step: vec![0; df.stages.len()],
            total: 0,
        };
        plan.target = match target {
            Some(t) => df
                .stages
                .iter()
                .position(|s| s.name.as_deref() == Some(&t.to_ascii_lowercase()))
                .ok_or_else(|| invalid(format!("failed to reach build target {t} in Dockerfile")))?,
            None => df.stages.len() - 1,
        };
        let mut stack: Vec<usize> = (0..=plan.target).collect();
        while let Some(i) = stack.pop() {
            if plan.needed[i] {
                continue;
            }
            plan.needed[i] = true;
            let s = &df.stages[i];
            let base = shell::expand(&s.image, esc, &|k| plan.global_value(k)).map_err(|e| invalid(e.0))?;
            let mut reads = vec![base];
            for ins in &s.instructions {
                match &ins.value {
                    Instruction::Copy(c) => reads.extend(c.from.clone()),
                    Instruction::Run(r) => {
                        for m in &r.mounts {
                            reads.extend(
                                m.split(',').filter_map(|p| p.trim().strip_prefix("from=")).map(str::to_string),
                            );
                        }
                    }
                    _ => {}
                }
            }
            for f in reads {
                if let Some(j) = stage_index(df, &f).filter(|j| *j < i) {
                    plan.deps[i].push(j);
                    stack.push(j);
                }
            }
        }
        let mut n = 1;
        for (i, st) in df.stages.iter().enumerate() {
            if plan.needed[i] {
                plan.first_step[i] = n;
                n += st.instructions.len() + 1;
            }
        }
        plan.total = n - 1;
        Ok(plan)
    }

    /// A global ARG's value, or a predefined one.
    pub fn global_value(&self, k: &str) -> Option<String> {
        self.global
            .get(k)
            .cloned()
            .flatten()
            .or_else(|| PREDEFINED_ARGS.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    /// The needed stages in waves: each wave's stages depend only on earlier waves, so they
    /// can build at the same time.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let mut done = vec![false; self.needed.len()];
        let mut waves = Vec::new();
        loop {
            let wave: Vec<usize> = (0..self.needed.len())
                .filter(|&i| self.needed[i] && !done[i] && self.deps[i].iter().all(|d| done[*d]))
                .collect();
            if wave.is_empty() {
                return waves;
            }
            for &i in &wave {
                done[i] = true;
            }
            waves.push(wave);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::dockerfile::parse;
    use super::*;

    fn plan(text: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<Plan> {
        let df = parse(text, "Dockerfile").unwrap();
        let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Plan::new(&df, &args, target)
    }

    #[test]
    fn global_args_take_build_args_over_defaults_and_see_each_other() {
        let p = plan("ARG A=1\nARG B=${A}2\nARG C\nFROM scratch\n", &[("A", "9")], None).unwrap();
        assert_eq!(p.global["A"].as_deref(), Some("9"));
        assert_eq!(p.global["B"].as_deref(), Some("92"));
        assert_eq!(p.global["C"], None);
        assert_eq!(p.global_value("TARGETARCH").as_deref(), Some("amd64"));
        assert_eq!(p.global_value("NOPE"), None);
    }

    #[test]
    fn every_stage_up_to_the_target_builds_and_later_ones_do_not() {
        let text = "FROM scratch AS a\nFROM scratch AS b\nFROM scratch AS c\n";
        let p = plan(text, &[], Some("B")).unwrap();
        assert_eq!(p.target, 1);
        assert_eq!(p.needed, vec![true, true, false]);
        assert_eq!(p.total, 2);
        assert!(plan(text, &[], Some("nope")).unwrap_err().message.contains("failed to reach build target nope"));
    }

    #[test]
    fn dependencies_make_waves_and_steps_are_numbered_per_stage() {
        let text = "ARG BASE=a\nFROM busybox AS a\nRUN x\nFROM busybox AS b\nRUN y\nRUN z\n\
                    FROM ${BASE} AS c\nCOPY --from=b /x /x\nRUN --mount=type=bind,from=1,target=/m true\n";
        let p = plan(text, &[], None).unwrap();
        assert_eq!(p.target, 2);
        assert_eq!(p.deps[2].iter().copied().collect::<std::collections::BTreeSet<_>>(), [0, 1].into());
        assert_eq!(p.waves(), vec![vec![0, 1], vec![2]]);
        assert_eq!(p.first_step, vec![1, 3, 6]);
        assert_eq!(p.total, 8);
        // The base named through a build arg follows the arg.
        let p = plan(text, &[("BASE", "busybox")], None).unwrap();
        assert_eq!(p.deps[2].iter().copied().collect::<std::collections::BTreeSet<_>>(), [1].into());
    }

    #[test]
    fn a_stage_cannot_depend_on_a_later_one() {
        let p = plan("FROM b AS a\nFROM scratch AS b\n", &[], Some("a")).unwrap();
        assert!(p.deps[0].is_empty(), "FROM b in stage 0 names an image, not the later stage");
        assert_eq!(p.waves(), vec![vec![0]]);
    }
}
