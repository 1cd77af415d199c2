//! `docker commit --change` and `docker import --change`: Dockerfile instructions that only
//! change an image's configuration, applied as the builder applies them (variables substituted
//! from the environment as it stands before each one).

use super::*;

/// The instructions a change may be (dockerd's list).
const ALLOWED: &[&str] =
    &["CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"];

/// Applies `changes` (one instruction each) to `run`, in order.
pub fn apply(run: &mut RunConfig, changes: &[String]) -> Result<()> {
    let shell = ["/bin/sh".to_string(), "-c".to_string()];
    let expand = |run: &RunConfig, w: &str| shell::expand(w, '\\', &|k| env_lookup(run, k)).map_err(|e| invalid(e.0));
    for line in changes.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        let kw = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        if !ALLOWED.contains(&kw.as_str()) {
            return Err(invalid(format!("{kw} is not a valid change command")));
        }
        let ins = dockerfile::parse_line(line).map_err(|e| invalid(format!("{line}: {e}")))?;
        apply_meta(run, &ins, &shell, &expand)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> Result<RunConfig> {
        let mut c = RunConfig::default();
        apply(&mut c, &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        Ok(c)
    }

    #[test]
    fn changes_apply_like_docker() {
        let c = applied(&[
            "CMD [\"/bin/sh\"]",
            "ENV A=1 B=\"two words\"",
            "ENV C 3",
            "EXPOSE 80 53/udp 8000-8002",
            "WORKDIR /srv",
            "WORKDIR www",
            "LABEL k=v",
            "ENTRYPOINT echo hi",
            "stopsignal SIGINT",
        ])
        .unwrap();
        assert_eq!(c.env.unwrap(), vec!["A=1", "B=two words", "C=3"]);
        let ports = c.exposed_ports.unwrap();
        for p in ["80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"] {
            assert!(ports.contains_key(p), "{p}");
        }
        assert_eq!(c.working_dir.as_deref(), Some("/srv/www"));
        assert_eq!(c.entrypoint.unwrap(), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.cmd, None, "a new entrypoint resets CMD");
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn variables_come_from_the_environment_before_each_change() {
        let mut c = RunConfig { env: Some(vec!["PATH=/bin".into()]), ..Default::default() };
        apply(&mut c, &["ENV PATH=/usr/bin:$PATH".into(), "ENV D=${PATH}/x E=$PATH".into()]).unwrap();
        assert_eq!(c.env.unwrap(), vec!["PATH=/usr/bin:/bin", "D=/usr/bin:/bin/x", "E=/usr/bin:/bin"]);
        let c = applied(&["ENV DIR=/data", "WORKDIR $DIR/app", "LABEL at=${DIR}"]).unwrap();
        assert_eq!(c.working_dir.as_deref(), Some("/data/app"));
        assert_eq!(c.labels.unwrap()["at"], "/data");
    }

    #[test]
    fn bad_changes_are_refused() {
        for bad in [
            "RUN rm -rf /",
            "FROM busybox",
            "COPY a b",
            "EXPOSE 99999",
            "EXPOSE 80/xyz",
            "ENV A=\"x",
            "SHELL [\"/bin/bash\"]",
            "STOPSIGNAL NOPE",
            "VOLUME",
            "FROBNICATE",
        ] {
            assert!(applied(&[bad]).is_err(), "{bad}");
        }
        assert!(applied(&["RUN x"]).unwrap_err().message.contains("RUN is not a valid change command"));
    }
}
