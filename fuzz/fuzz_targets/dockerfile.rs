//! Dockerfiles and the words in them: never panic; what parses has at least one stage, and
//! every word expands (or fails with an error) whatever the variables hold.
#![no_main]
use libfuzzer_sys::fuzz_target;
use skiff_build::{dockerfile, shell};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let lookup = |k: &str| if k.len() % 2 == 0 { Some(format!("<{k}>")) } else { None };
    let _ = shell::expand(s, '\\', &lookup);
    let _ = shell::expand(s, '`', &lookup);
    if let Ok(d) = dockerfile::parse(s, "Dockerfile") {
        assert!(!d.stages.is_empty());
        for st in &d.stages {
            let _ = shell::expand(&st.image, d.directives.escape, &lookup);
            for i in &st.instructions {
                if let dockerfile::Instruction::Env(kv) | dockerfile::Instruction::Label(kv) = &i.value {
                    for (_, v) in kv {
                        let _ = shell::expand(v, d.directives.escape, &lookup);
                    }
                }
            }
        }
    }
});
