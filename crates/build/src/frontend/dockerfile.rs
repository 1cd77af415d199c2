//! The Dockerfile parser: text in, plain data out (stages of instructions, each with its line).
//!
//! What it follows (the Dockerfile reference, as BuildKit's frontend reads it):
//! - parser directives (`# syntax=`, `# escape=`, `# check=`) only at the very top, each once;
//! - comments (`#` first on a line), line continuations with the escape character (`\` or
//!   `` ` ``), comment and empty lines inside a continuation skipped;
//! - heredocs on RUN, COPY and ADD (`<<EOF`, `<<-EOF` stripping leading tabs, `<<"EOF"` /
//!   `<<'EOF'` without expansion, several per instruction, bodies in order);
//! - exec (JSON array) and shell forms; `--flag[=value]` options checked per instruction;
//!   `ENV`/`LABEL` `k=v` lists (and the legacy `ENV k v`), `ARG name[=default]`, `ONBUILD`.
//!
//! Words keep their quotes and `$` references: `shell::expand` resolves them with the build's
//! ARG/ENV state, which the planner owns.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directives {
    pub syntax: Option<String>,
    pub escape: char,
    pub check: Option<String>,
}

/// A whole Dockerfile: ARGs before the first FROM, then the stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    pub global_args: Vec<Located<ArgDecl>>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub line: usize,
    /// The instruction as written (continuations joined), for progress output.
    pub text: String,
    pub value: T,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub line: usize,
    /// The FROM line as written.
    pub text: String,
    /// The base: an image reference or an earlier stage's name (unexpanded).
    pub image: String,
    pub name: Option<String>,
    pub platform: Option<String>,
    pub instructions: Vec<Located<Instruction>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// Exec form (JSON array) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// False when the delimiter was quoted: no variable expansion in the body.
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// `--mount` specs, unparsed (`type=cache,target=/x`).
    pub mounts: Vec<String>,
    pub network: Option<String>,
    pub security: Option<String>,
    pub command: Command,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySpec {
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD only.
    pub checksum: Option<String>,
    pub keep_git_dir: Option<bool>,
    /// Sources; a source naming a heredoc (`<<EOF`) is its content.
    pub sources: Vec<String>,
    pub dest: String,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    None,
    Check {
        command: Command,
        interval: Option<String>,
        timeout: Option<String>,
        start_period: Option<String>,
        start_interval: Option<String>,
        retries: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    Label(Vec<(String, String)>),
    Maintainer(String),
    Expose(Vec<String>),
    Env(Vec<(String, String)>),
    Add(CopySpec),
    Copy(CopySpec),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(Vec<ArgDecl>),
    /// The trigger, kept as text and parsed again when it fires.
    Onbuild(String),
    StopSignal(String),
    Healthcheck(Health),
}

/// Parses a Dockerfile; `file` names it in errors.
pub fn parse(src: &str, file: &str) -> Result<Dockerfile, ParseError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let lines: Vec<&str> = src.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let err = |line: usize, m: String| ParseError { file: file.to_string(), line, message: m };
    let (directives, mut i) = parse_directives(&lines).map_err(|(line, m)| err(line, m))?;
    let esc = directives.escape;
    let mut out = Dockerfile { directives, global_args: Vec::new(), stages: Vec::new() };
    while i < lines.len() {
        let t = lines[i].trim_start();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let text = logical_line(&lines, &mut i, esc);
        let (kw, rest) = match text.find(|c: char| c.is_whitespace()) {
            Some(p) => (&text[..p], text[p..].trim()),
            None => (text.as_str(), ""),
        };
        let kw = kw.to_ascii_uppercase();
        // Heredoc bodies follow the instruction's line.
        let mut heredocs = Vec::new();
        if matches!(kw.as_str(), "RUN" | "COPY" | "ADD") && !rest.starts_with('[') {
            for (name, expand, strip_tabs) in heredoc_markers(rest) {
                let mut content = String::new();
                let mut found = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let l = if strip_tabs { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        found = true;
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if !found {
                    return Err(err(start, format!("unterminated heredoc {name:?}")));
                }
                heredocs.push(Heredoc { name, content, expand });
            }
        }
        let located = |value| Located { line: start, text: text.trim().to_string(), value };
        if kw == "FROM" {
            let (flags, args) = take_flags(rest, &["platform"], &[]).map_err(|m| err(start, m))?;
            let words = split_words(&args);
            let (image, name) = match words.as_slice() {
                [img] => (img.clone(), None),
                [img, as_, name] if as_.eq_ignore_ascii_case("as") => (img.clone(), Some(name.clone())),
                [] => return Err(err(start, "FROM requires an image".into())),
                _ => {
                    return Err(err(
                        start,
                        "FROM requires either one or three arguments (FROM image [AS name])".into(),
                    ));
                }
            };
            if let Some(n) = &name
                && !valid_stage_name(n)
            {
                return Err(err(start, format!("invalid stage name {n:?}: only letters, digits, '.', '_' and '-'")));
            }
            out.stages.push(Stage {
                line: start,
                text: text.trim().to_string(),
                image,
                name: name.map(|n| n.to_ascii_lowercase()),
                platform: flags.get1("platform"),
                instructions: Vec::new(),
            });
            continue;
        }
        let ins = instruction(&kw, rest, heredocs).map_err(|m| err(start, m))?;
        match out.stages.last_mut() {
            Some(s) => s.instructions.push(located(ins)),
            None => match ins {
                Instruction::Arg(decls) => out.global_args.extend(decls.into_iter().map(|d| Located {
                    line: start,
                    text: text.trim().to_string(),
                    value: d,
                })),
                _ => return Err(err(start, format!("{kw} before the first FROM: only ARG may come before FROM"))),
            },
        }
    }
    if out.stages.is_empty() {
        return Err(err(lines.len().max(1), "the Dockerfile has no FROM instruction".into()));
    }
    Ok(out)
}

/// The parser directives (`# syntax=`, `# escape=`, `# check=`) at the top of a Dockerfile,
/// each at most once; returns them and the index of the first line after them. Errors carry
/// their 1-based line.
fn parse_directives(lines: &[&str]) -> Result<(Directives, usize), (usize, String)> {
    let mut directives = Directives { escape: '\\', ..Default::default() };
    let mut i = 0;
    // Directives: only the first lines, each once; anything else ends them.
    while i < lines.len() {
        let Some((k, v)) = directive(lines[i]) else { break };
        let seen = match k.as_str() {
            "syntax" => directives.syntax.replace(v.clone()).is_some(),
            "check" => directives.check.replace(v.clone()).is_some(),
            "escape" => {
                let c = match v.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => return Err((i + 1, format!("invalid escape token '{v}' does not match ` or \\"))),
                };
                let dup = directives.escape != '\\'
                    || lines[..i].iter().any(|l| directive(l).is_some_and(|(k, _)| k == "escape"));
                directives.escape = c;
                dup
            }
            _ => break,
        };
        if seen {
            return Err((i + 1, format!("only one {k} parser directive can be used")));
        }
        i += 1;
    }
    Ok((directives, i))
}

/// The instruction starting at `lines[*i]` with its continuation lines joined (comments and
/// blank lines inside a continuation skipped, as BuildKit does); `*i` moves past it.
fn logical_line(lines: &[&str], i: &mut usize, esc: char) -> String {
    let mut text = String::new();
    let mut cur = lines[*i].trim_start().to_string();
    *i += 1;
    loop {
        let trimmed = cur.trim_end();
        if let Some(body) = trimmed.strip_suffix(esc) {
            text.push_str(body);
            // Skip comments and blank lines inside the continuation.
            while *i < lines.len() && {
                let t = lines[*i].trim_start();
                t.is_empty() || t.starts_with('#')
            } {
                *i += 1;
            }
            if *i >= lines.len() {
                break;
            }
            cur = lines[*i].to_string();
            *i += 1;
        } else {
            text.push_str(&cur);
            break;
        }
    }
    text
}

fn valid_stage_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `# key=value` at the top, if the line is one.
fn directive(line: &str) -> Option<(String, String)> {
    let t = line.trim();
    let body = t.strip_prefix('#')?.trim_start();
    let (k, v) = body.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let k = k.to_ascii_lowercase();
    matches!(k.as_str(), "syntax" | "escape" | "check").then(|| (k, v.trim().to_string()))
}

/// The heredocs an instruction's arguments open: (delimiter, expand, strip leading tabs).
fn heredoc_markers(rest: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    for w in split_words(rest) {
        // An optional fd number (`3<<EOF`), then `<<`, optional `-`, optional quote.
        let w = w.trim_start_matches(|c: char| c.is_ascii_digit());
        let Some(mut r) = w.strip_prefix("<<") else { continue };
        let strip = r.starts_with('-');
        if strip {
            r = &r[1..];
        }
        let (name, expand) = match r.chars().next() {
            Some(q @ ('"' | '\'')) => match r[1..].strip_suffix(q) {
                Some(n) => (n, false),
                None => continue,
            },
            _ => (r, true),
        };
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push((name.to_string(), expand, strip));
        }
    }
    out
}

/// Splits on whitespace outside quotes, keeping the quotes.
pub fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                } else if c == '\\'
                    && q == '"'
                    && let Some(n) = chars.next()
                {
                    cur.push(n);
                }
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                cur.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else if c == '\\'
                    && let Some(n) = chars.next()
                {
                    cur.push(n);
                }
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[derive(Default)]
struct Flags(Vec<(String, Option<String>)>);

impl Flags {
    fn get1(&self, k: &str) -> Option<String> {
        self.0.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone().unwrap_or_default())
    }
    fn all(&self, k: &str) -> Vec<String> {
        self.0.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone().unwrap_or_default()).collect()
    }
    fn bool(&self, k: &str) -> Result<Option<bool>, String> {
        match self.0.iter().rev().find(|(n, _)| n == k) {
            None => Ok(None),
            Some((_, None)) => Ok(Some(true)),
            Some((_, Some(v))) => match v.as_str() {
                "true" | "" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(format!("invalid boolean value {v:?} for --{k}")),
            },
        }
    }
}

/// Leading `--name[=value]` options; `single` and `multi` name the allowed ones.
fn take_flags(rest: &str, single: &[&str], multi: &[&str]) -> Result<(Flags, String), String> {
    let mut flags = Flags::default();
    let mut s = rest.trim_start();
    while let Some(after) = s.strip_prefix("--") {
        let end = after.find(|c: char| c.is_whitespace()).unwrap_or(after.len());
        let word = &after[..end];
        if word.is_empty() {
            break;
        }
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v.trim_matches('"').to_string())),
            None => (word, None),
        };
        if !single.contains(&name) && !multi.contains(&name) {
            return Err(format!("unknown flag: --{name}"));
        }
        flags.0.push((name.to_string(), value));
        s = after[end..].trim_start();
    }
    Ok((flags, s.to_string()))
}

/// `["a", "b"]` if the text is a JSON array of strings.
fn json_array(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

fn command(rest: &str) -> Command {
    match json_array(rest) {
        Some(v) => Command::Exec(v),
        None => Command::Shell(rest.to_string()),
    }
}

/// `k=v k2="v 2"` pairs (quotes kept for expansion), or with `legacy`, `k rest of line`.
fn pairs(rest: &str, what: &str, legacy: bool) -> Result<Vec<(String, String)>, String> {
    let words = split_words(rest);
    if words.is_empty() {
        return Err(format!("{what} requires at least one argument"));
    }
    if !words[0].contains('=') {
        if !legacy {
            return Err(format!("{what} names must have a value: {}", words[0]));
        }
        // Legacy `ENV key value...`: the value is the rest of the line.
        let key = words[0].clone();
        let value = rest.trim_start()[key.len()..].trim().to_string();
        if value.is_empty() {
            return Err(format!("{what} {key} needs a value (ENV key=value, or ENV key value)"));
        }
        return Ok(vec![(key, value)]);
    }
    let mut out = Vec::new();
    for w in words {
        let (k, v) = w.split_once('=').ok_or_else(|| format!("{what}: {w:?} is not key=value"))?;
        if k.is_empty() {
            return Err(format!("{what}: empty key in {w:?}"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn one(rest: &str, what: &str) -> Result<String, String> {
    if rest.is_empty() {
        return Err(format!("{what} requires exactly one argument"));
    }
    Ok(rest.to_string())
}

/// Parses one instruction written on one line, as `docker commit --change` and `docker import
/// --change` take them (no continuation lines, heredocs or FROM). Errors name the problem.
pub fn parse_line(line: &str) -> Result<Instruction, String> {
    let line = line.trim();
    let (kw, rest) = match line.find(|c: char| c.is_whitespace()) {
        Some(p) => (&line[..p], line[p..].trim()),
        None => (line, ""),
    };
    let kw = kw.to_ascii_uppercase();
    if kw == "FROM" {
        return Err("FROM is not an instruction that changes an image's configuration".into());
    }
    instruction(&kw, rest, Vec::new())
}

fn instruction(kw: &str, rest: &str, heredocs: Vec<Heredoc>) -> Result<Instruction, String> {
    Ok(match kw {
        "RUN" => {
            let (f, args) = take_flags(rest, &["network", "security"], &["mount"])?;
            if args.is_empty() && heredocs.is_empty() {
                return Err("RUN requires a command".into());
            }
            Instruction::Run(Run {
                mounts: f.all("mount"),
                network: f.get1("network"),
                security: f.get1("security"),
                command: command(&args),
                heredocs,
            })
        }
        "CMD" => Instruction::Cmd(command(rest)),
        "ENTRYPOINT" => Instruction::Entrypoint(command(rest)),
        "SHELL" => Instruction::Shell(
            json_array(rest).filter(|v| !v.is_empty()).ok_or("SHELL requires the arguments to be in JSON form")?,
        ),
        "LABEL" => Instruction::Label(pairs(rest, "LABEL", false)?),
        "MAINTAINER" => Instruction::Maintainer(one(rest, "MAINTAINER")?),
        "EXPOSE" => {
            let w = split_words(rest);
            if w.is_empty() {
                return Err("EXPOSE requires at least one argument".into());
            }
            Instruction::Expose(w)
        }
        "ENV" => Instruction::Env(pairs(rest, "ENV", true)?),
        "ADD" | "COPY" => copy_spec(kw, rest, heredocs)?,
        "VOLUME" => {
            let v = match json_array(rest) {
                Some(v) => v,
                None => split_words(rest),
            };
            if v.is_empty() || v.iter().any(|s| s.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Instruction::Volume(v)
        }
        "USER" => Instruction::User(one(rest, "USER")?),
        "WORKDIR" => Instruction::Workdir(one(rest, "WORKDIR")?),
        "ARG" => Instruction::Arg(arg_decls(rest)?),
        "ONBUILD" => {
            let (inner, inner_rest) = match rest.find(|c: char| c.is_whitespace()) {
                Some(p) => (&rest[..p], rest[p..].trim()),
                None => (rest, ""),
            };
            let inner = inner.to_ascii_uppercase();
            match inner.as_str() {
                "" => return Err("ONBUILD requires an instruction".into()),
                "ONBUILD" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
                "FROM" | "MAINTAINER" => return Err(format!("{inner} isn't allowed as an ONBUILD trigger")),
                _ => {}
            }
            // Check it parses now; it runs later in a child build.
            instruction(&inner, inner_rest, Vec::new())?;
            Instruction::Onbuild(format!("{inner} {inner_rest}").trim_end().to_string())
        }
        "STOPSIGNAL" => Instruction::StopSignal(one(rest, "STOPSIGNAL")?),
        "HEALTHCHECK" => {
            let (f, args) =
                take_flags(rest, &["interval", "timeout", "start-period", "start-interval", "retries"], &[])?;
            let (first, after) = match args.find(|c: char| c.is_whitespace()) {
                Some(p) => (&args[..p], args[p..].trim()),
                None => (args.as_str(), ""),
            };
            match first.to_ascii_uppercase().as_str() {
                "NONE" => {
                    if !after.is_empty() || !f.0.is_empty() {
                        return Err("HEALTHCHECK NONE takes no other arguments".into());
                    }
                    Instruction::Healthcheck(Health::None)
                }
                "CMD" => {
                    if after.is_empty() {
                        return Err("HEALTHCHECK CMD requires a command".into());
                    }
                    Instruction::Healthcheck(Health::Check {
                        command: command(after),
                        interval: f.get1("interval"),
                        timeout: f.get1("timeout"),
                        start_period: f.get1("start-period"),
                        start_interval: f.get1("start-interval"),
                        retries: f.get1("retries"),
                    })
                }
                _ => return Err("HEALTHCHECK requires NONE or CMD".into()),
            }
        }
        "" => return Err("empty instruction".into()),
        other => return Err(format!("unknown instruction: {other}")),
    })
}

/// COPY and ADD: their flags (ADD's remote-source ones; COPY's --from), sources and destination.
fn copy_spec(kw: &str, rest: &str, heredocs: Vec<Heredoc>) -> Result<Instruction, String> {
    let add = kw == "ADD";
    let (f, args) = if add {
        take_flags(rest, &["chown", "chmod", "link", "checksum", "keep-git-dir", "from", "parents"], &["exclude"])?
    } else {
        take_flags(rest, &["from", "chown", "chmod", "link", "parents"], &["exclude"])?
    };
    if add && f.get1("from").is_some() {
        return Err("ADD does not support --from (use COPY --from)".into());
    }
    let words = match json_array(&args) {
        Some(v) => v,
        None => split_words(&args),
    };
    let Some((dest, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(format!("{kw} requires at least two arguments, but only {} provided", words.len()));
    };
    let spec = CopySpec {
        from: f.get1("from"),
        chown: f.get1("chown"),
        chmod: f.get1("chmod"),
        link: f.bool("link")?.unwrap_or(false),
        parents: f.bool("parents")?.unwrap_or(false),
        exclude: f.all("exclude"),
        checksum: f.get1("checksum"),
        keep_git_dir: f.bool("keep-git-dir")?,
        sources: sources.to_vec(),
        dest: dest.clone(),
        heredocs,
    };
    Ok(if add { Instruction::Add(spec) } else { Instruction::Copy(spec) })
}

/// ARG's declarations: `NAME` or `NAME=default`, several on one line.
fn arg_decls(rest: &str) -> Result<Vec<ArgDecl>, String> {
    let words = split_words(rest);
    if words.is_empty() {
        return Err("ARG requires at least one argument".into());
    }
    let mut decls = Vec::new();
    for w in words {
        let (name, default) = match w.split_once('=') {
            Some((n, d)) => (n.to_string(), Some(d.to_string())),
            None => (w, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid ARG name {name:?}"));
        }
        decls.push(ArgDecl { name, default });
    }
    Ok(decls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Dockerfile {
        parse(s, "Dockerfile").unwrap_or_else(|e| panic!("{e}"))
    }
    fn e(s: &str) -> ParseError {
        parse(s, "Dockerfile").expect_err(s)
    }

    #[test]
    fn minimal_and_seed() {
        let d = p("FROM httpd:2.4\nCOPY ./public-html/ /usr/local/apache2/htdocs/\n");
        assert_eq!(d.stages.len(), 1);
        assert_eq!(d.stages[0].image, "httpd:2.4");
        match &d.stages[0].instructions[0].value {
            Instruction::Copy(c) => {
                assert_eq!(c.sources, vec!["./public-html/"]);
                assert_eq!(c.dest, "/usr/local/apache2/htdocs/");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.stages[0].instructions[0].line, 2);
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = e("FROM a\n\nRUN\n");
        assert_eq!(err.line, 3);
        assert_eq!(err.to_string(), "Dockerfile:3: RUN requires a command");
        assert!(e("RUN x").message.contains("before the first FROM"));
        assert!(e("# just a comment\n").message.contains("no FROM"));
        assert!(e("FROM a\nFROBNICATE x").message.contains("unknown instruction: FROBNICATE"));
        assert!(e("FROM a\nCOPY --bogus a b").message.contains("unknown flag: --bogus"));
        assert!(e("FROM a\nRUN <<EOF\necho").message.contains("unterminated heredoc"));
        assert!(e("# escape=x\nFROM a").message.contains("invalid escape token"));
        assert!(e("# escape=`\n# escape=\\\nFROM a").message.contains("only one escape"));
        assert!(e("FROM a AS b c").message.contains("one or three"));
        assert!(e("FROM a AS 1x").message.contains("invalid stage name"));
        assert!(e("FROM a\nSHELL sh -c").message.contains("JSON"));
        assert!(e("FROM a\nONBUILD ONBUILD RUN x").message.contains("Chaining"));
        assert!(e("FROM a\nADD --from=x a b").message.contains("--from"));
        assert!(e("FROM a\nCOPY onlyone").message.contains("at least two"));
        assert!(e("FROM a\nLABEL novalue").message.contains("must have a value"));
        assert!(e("FROM a\nHEALTHCHECK echo").message.contains("NONE or CMD"));
    }

    #[test]
    fn directives_only_at_top() {
        let d = p("# syntax=docker/dockerfile:1\n# ESCAPE = `\n# check=skip=all\nFROM a\nRUN echo `\n  hi\n");
        assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.directives.escape, '`');
        assert_eq!(d.directives.check.as_deref(), Some("skip=all"));
        // After a comment, a directive-looking line is a comment.
        let d = p("# hello\n# escape=`\nFROM a\nRUN echo \\\n  hi\n");
        assert_eq!(d.directives.escape, '\\');
        // An unknown directive ends directive parsing.
        let d = p("# foo=bar\n# escape=`\nFROM a\n");
        assert_eq!(d.directives.escape, '\\');
    }

    #[test]
    fn continuation_skips_comments_and_blank_lines() {
        let d = p("FROM a\nRUN echo a \\\n# a comment\n\n    b \\\n    c\nUSER x\n");
        let ins = &d.stages[0].instructions;
        assert_eq!(
            ins[0].value,
            Instruction::Run(Run {
                mounts: vec![],
                network: None,
                security: None,
                command: Command::Shell("echo a     b     c".into()),
                heredocs: vec![],
            })
        );
        assert_eq!(ins[1].line, 7);
        // Continuation at end of file.
        p("FROM a\nRUN echo \\");
    }

    #[test]
    fn windows_line_endings_and_bom() {
        let d = p("\u{feff}FROM a\r\nRUN x\r\n");
        assert_eq!(d.stages[0].instructions.len(), 1);
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(split_words(r#"a "b c" 'd e' f\ g"#), vec!["a", "\"b c\"", "'d e'", "f\\ g"]);
        assert_eq!(split_words("  "), Vec::<String>::new());
    }
}
