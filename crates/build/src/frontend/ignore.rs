//! `.dockerignore` and the globs of COPY/ADD sources.
//!
//! Patterns are matched against slash-separated paths relative to the context root: `*` and
//! `?` stay within one path component, `[a-z]` classes, `**` spans any number of components,
//! `\` escapes. A pattern that matches a directory also covers everything under it. In a
//! `.dockerignore` the last matching line wins, and `!` lines re-include.

/// Matches a whole path against a pattern, component by component.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    let s: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    match_components(&p, &s)
}

fn match_components(p: &[&str], s: &[&str]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(&"**") => (0..=s.len()).any(|k| match_components(&p[1..], &s[k..])),
        Some(pc) => !s.is_empty() && match_one(pc.as_bytes(), s[0].as_bytes()) && match_components(&p[1..], &s[1..]),
    }
}

/// Go's `filepath.Match` for one component.
fn match_one(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let (mut star_p, mut star_s) = (None, 0);
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star_p = Some(pi);
                    star_s = si;
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => {
                    if let Some((ok, next)) = class(p, pi, s[si])
                        && ok
                    {
                        pi = next;
                        si += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() && p[pi + 1] == s[si] => {
                    pi += 2;
                    si += 1;
                    continue;
                }
                c if c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star_p {
            Some(sp) => {
                pi = sp + 1;
                star_s += 1;
                si = star_s;
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// A `[...]` class at `p[i]`: (matches, index after the class); None if malformed.
fn class(p: &[u8], i: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = i + 1;
    let negate = j < p.len() && (p[j] == b'^' || p[j] == b'!');
    if negate {
        j += 1;
    }
    let mut found = false;
    let mut first = true;
    while j < p.len() && (p[j] != b']' || first) {
        first = false;
        let lo = p[j];
        if j + 2 < p.len() && p[j + 1] == b'-' && p[j + 2] != b']' {
            if lo <= c && c <= p[j + 2] {
                found = true;
            }
            j += 3;
        } else {
            if lo == c {
                found = true;
            }
            j += 1;
        }
    }
    if j >= p.len() {
        return None;
    }
    Some((found != negate, j + 1))
}

/// Whether a pattern has glob characters.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Cleans a pattern or path the way Go's `filepath.Clean` does, relative to the root.
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

#[derive(Debug, Clone, Default)]
pub struct Matcher {
    /// (pattern, is an exception)
    rules: Vec<(String, bool)>,
}

impl Matcher {
    /// Parses `.dockerignore` text.
    pub fn new(text: &str) -> Matcher {
        let mut rules = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exc, pat) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let pat = clean(pat);
            if !pat.is_empty() {
                rules.push((pat, exc));
            }
        }
        Matcher { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Adds another matcher's rules after these (they win where both match).
    pub fn extend(&mut self, other: &Matcher) {
        self.rules.extend(other.rules.iter().cloned());
    }

    /// Whether a context-relative path is excluded (it, or a parent directory, matched last by
    /// a non-exception pattern).
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let comps: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (pat, exc) in &self.rules {
            let hit = (1..=comps.len()).any(|k| glob_match(pat, &comps[..k].join("/")));
            if hit {
                excluded = !exc;
            }
        }
        excluded
    }

    /// Whether an exception might re-include something under an excluded directory (then the
    /// directory must still be walked).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(_, e)| *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "d/a.txt"));
        assert!(glob_match("*/*.txt", "d/a.txt"));
        assert!(glob_match("**/*.txt", "d/e/a.txt"));
        assert!(glob_match("**/*.txt", "a.txt"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("a", "ab"));
        assert!(glob_match("src/**", "src/x/y"));
        assert!(!glob_match("[", "["));
    }

    #[test]
    fn dockerignore() {
        let m = Matcher::new("# comment\n*.md\n!README.md\nbuild/\n/secret\n**/*.tmp\n");
        assert!(m.excluded("notes.md"));
        assert!(!m.excluded("README.md"));
        assert!(m.excluded("build/out/bin"));
        assert!(m.excluded("secret"));
        assert!(m.excluded("a/b/c.tmp"));
        assert!(!m.excluded("src/main.rs"));
        assert!(!m.excluded("docs/x.md"), "*.md is only at the root");
        assert_eq!(clean("./a/../b//c/"), "b/c");
        assert_eq!(clean("../../x"), "x");
    }
}
