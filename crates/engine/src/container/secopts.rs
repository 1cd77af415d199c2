//! `--security-opt`, parsed once: at create (where a bad option is refused) and when a record
//! is read; starts and the OCI spec read the typed form, never the strings.
//!
//! dockerd's forms: `seccomp=unconfined|builtin|<profile JSON>`, `no-new-privileges[=bool]`,
//! `apparmor=<profile>`, `label=<SELinux option>`, `systempaths=unconfined`; the legacy `:`
//! separator is accepted as dockerd accepts it.

/// Which seccomp filter a container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// The daemon's profile (Docker's default), resolved against the container's capabilities.
    #[default]
    Builtin,
    Unconfined,
    /// A profile given as JSON text (the CLI reads the file and sends its content).
    Custom(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOpts {
    pub seccomp: Seccomp,
    pub no_new_privileges: bool,
    /// No masked or read-only paths.
    pub systempaths_unconfined: bool,
}

/// Go's `strconv.ParseBool`, which dockerd uses for `no-new-privileges=…`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl SecurityOpts {
    /// Parses a request's options; `Err` is dockerd's message for the first bad one. The
    /// warnings are what create reports (AppArmor profiles this host cannot apply).
    pub fn parse(opts: &[String]) -> Result<(SecurityOpts, Vec<String>), String> {
        let mut s = SecurityOpts::default();
        let mut warnings = Vec::new();
        for o in opts {
            let bad = || format!("invalid --security-opt 2: {o:?}");
            if o == "no-new-privileges" {
                s.no_new_privileges = true;
                continue;
            }
            let (key, value) = o.split_once('=').or_else(|| o.split_once(':')).ok_or_else(bad)?;
            match key {
                "seccomp" => {
                    s.seccomp = match value {
                        "unconfined" => Seccomp::Unconfined,
                        "builtin" => Seccomp::Builtin,
                        "" => return Err(bad()),
                        json => Seccomp::Custom(json.to_string()),
                    }
                }
                "no-new-privileges" => s.no_new_privileges = parse_bool(value).ok_or_else(bad)?,
                // Accepted and shown by inspect as given (the request keeps them); this host
                // has neither AppArmor nor SELinux to apply them.
                "apparmor" => {
                    if value != "unconfined" {
                        warnings.push(format!("AppArmor is not enabled on this host; ignoring {o}"));
                    }
                }
                "label" => {}
                "systempaths" if value == "unconfined" => s.systempaths_unconfined = true,
                _ => return Err(bad()),
            }
        }
        Ok((s, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(opts: &[&str]) -> Result<SecurityOpts, String> {
        SecurityOpts::parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map(|(s, _)| s)
    }

    #[test]
    fn dockerds_forms_parse() {
        assert_eq!(parse(&[]).unwrap(), SecurityOpts::default());
        for nnp in ["no-new-privileges", "no-new-privileges=true", "no-new-privileges:true", "no-new-privileges=1"] {
            assert!(parse(&[nnp]).unwrap().no_new_privileges, "{nnp}");
        }
        assert!(!parse(&["no-new-privileges=false"]).unwrap().no_new_privileges);
        assert_eq!(parse(&["seccomp=unconfined"]).unwrap().seccomp, Seccomp::Unconfined);
        assert_eq!(parse(&["seccomp:builtin"]).unwrap().seccomp, Seccomp::Builtin);
        // A profile's JSON holds ':' and '=': only the first separator splits.
        let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","names":["a=b:c"]}"#;
        assert_eq!(parse(&[&format!("seccomp={json}")]).unwrap().seccomp, Seccomp::Custom(json.into()));
        assert!(parse(&["systempaths=unconfined"]).unwrap().systempaths_unconfined);
        assert_eq!(parse(&["label=disable", "label:level:s0"]).unwrap(), SecurityOpts::default());
        let (s, w) = SecurityOpts::parse(&["apparmor=docker-default".into()]).unwrap();
        assert_eq!(
            (s, w),
            (
                SecurityOpts::default(),
                vec!["AppArmor is not enabled on this host; ignoring apparmor=docker-default".to_string()]
            )
        );
        assert!(SecurityOpts::parse(&["apparmor=unconfined".into()]).unwrap().1.is_empty());
    }

    #[test]
    fn hostile_options_are_refused_with_dockerds_words() {
        for bad in [
            "evil",
            "",
            "=",
            "seccomp=",
            "no-new-privileges=maybe",
            "no-new-privilegesX",
            "systempaths=confined",
            "capabilities=all",
            "\u{0}",
        ] {
            let e = parse(&[bad]).unwrap_err();
            assert!(e.starts_with("invalid --security-opt 2:"), "{bad:?}: {e}");
        }
    }
}
