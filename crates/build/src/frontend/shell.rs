//! Word expansion as the Dockerfile frontend does it for ADD, COPY, ENV, EXPOSE, FROM, LABEL,
//! STOPSIGNAL, USER, VOLUME, WORKDIR and ARG: quotes are removed (single quotes keep everything
//! literal, double quotes allow variables), the escape character escapes the next character,
//! and `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//! `${VAR:?msg}`, `${VAR?msg}` are substituted. Unset variables expand to nothing.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExpandError(pub String);

/// Expands one word with `lookup` giving variables' values (None = unset).
pub fn expand(word: &str, escape: char, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
    let chars: Vec<char> = word.chars().collect();
    let mut p = Lexer { c: &chars, i: 0, escape, lookup };
    p.word(None)
}

struct Lexer<'a> {
    c: &'a [char],
    i: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }

    /// Processes until the end, or until `stop` (the `}` closing a `${…:-word}`) at depth 0.
    fn word(&mut self, stop: Option<char>) -> Result<String, ExpandError> {
        let mut out = String::new();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                return Ok(out);
            }
            self.i += 1;
            match ch {
                '\'' => {
                    let start = self.i;
                    while self.peek().is_some_and(|c| c != '\'') {
                        self.i += 1;
                    }
                    if self.peek().is_none() {
                        return Err(ExpandError(
                            "unexpected end of statement while looking for matching single-quote".into(),
                        ));
                    }
                    out.extend(&self.c[start..self.i]);
                    self.i += 1;
                }
                '"' => out.push_str(&self.double_quoted()?),
                '$' => out.push_str(&self.dollar()?),
                c if c == self.escape => match self.peek() {
                    Some(n) => {
                        out.push(n);
                        self.i += 1;
                    }
                    None => out.push(c),
                },
                c => out.push(c),
            }
        }
        if stop.is_some() {
            return Err(ExpandError("missing '}'".into()));
        }
        Ok(out)
    }

    fn double_quoted(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        loop {
            let Some(ch) = self.peek() else {
                return Err(ExpandError("unexpected end of statement while looking for matching double-quote".into()));
            };
            self.i += 1;
            match ch {
                '"' => return Ok(out),
                '$' => out.push_str(&self.dollar()?),
                c if c == self.escape => match self.peek() {
                    Some(n @ ('"' | '$')) => {
                        out.push(n);
                        self.i += 1;
                    }
                    Some(n) if n == self.escape => {
                        out.push(n);
                        self.i += 1;
                    }
                    _ => out.push(c),
                },
                c => out.push(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.i += 1;
        }
        self.c[start..self.i].iter().collect()
    }

    /// After a `$`.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        match self.peek() {
            Some('{') => {
                self.i += 1;
                let name = self.name();
                if name.is_empty() {
                    return Err(ExpandError("bad substitution: empty variable name".into()));
                }
                let value = (self.lookup)(&name);
                match self.peek() {
                    Some('}') => {
                        self.i += 1;
                        Ok(value.unwrap_or_default())
                    }
                    Some(':') | Some('-') | Some('+') | Some('?') => {
                        let colon = self.peek() == Some(':');
                        if colon {
                            self.i += 1;
                        }
                        let op = self.peek().ok_or_else(|| ExpandError("missing '}'".into()))?;
                        if !matches!(op, '-' | '+' | '?') {
                            return Err(ExpandError(format!("unsupported modifier ({op}) in substitution")));
                        }
                        self.i += 1;
                        let word = self.word(Some('}'))?;
                        self.i += 1; // the '}'
                        let set = match &value {
                            Some(v) => !(colon && v.is_empty()),
                            None => false,
                        };
                        match op {
                            '-' => Ok(if set { value.unwrap_or_default() } else { word }),
                            '+' => Ok(if set { word } else { String::new() }),
                            _ => {
                                if set {
                                    Ok(value.unwrap_or_default())
                                } else {
                                    let msg =
                                        if word.is_empty() { "is not allowed to be unset".to_string() } else { word };
                                    Err(ExpandError(format!("{name}: {msg}")))
                                }
                            }
                        }
                    }
                    Some(c) => Err(ExpandError(format!("unsupported modifier ({c}) in substitution"))),
                    None => Err(ExpandError("missing '}'".into())),
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.name();
                Ok((self.lookup)(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("apple".into()),
            "E" => Some(String::new()),
            "P" => Some("/usr/local".into()),
            _ => None,
        }
    }

    fn x(w: &str) -> String {
        expand(w, '\\', &env).unwrap()
    }

    #[test]
    fn substitutions() {
        assert_eq!(x("$A"), "apple");
        assert_eq!(x("${A}s"), "apples");
        assert_eq!(x("$P/bin:$PATH"), "/usr/local/bin:");
        assert_eq!(x("${NOPE:-def}"), "def");
        assert_eq!(x("${E:-def}"), "def");
        assert_eq!(x("${E-def}"), "");
        assert_eq!(x("${A:+yes}"), "yes");
        assert_eq!(x("${E+yes}"), "yes");
        assert_eq!(x("${E:+yes}"), "");
        assert_eq!(x("${NOPE:-${A}-x}"), "apple-x");
        assert_eq!(x("\\$A"), "$A");
        assert_eq!(x("'$A'"), "$A");
        assert_eq!(x("\"$A b\""), "apple b");
        assert_eq!(x("\"\\$A\""), "$A");
        assert_eq!(x("a\\ b"), "a b");
        assert_eq!(x("$"), "$");
        assert_eq!(x("$1"), "$1");
        assert_eq!(x("cost: 5$"), "cost: 5$");
        assert_eq!(expand("`$A", '`', &env).unwrap(), "$A");
        assert_eq!(expand("c:\\dir", '`', &env).unwrap(), "c:\\dir");
    }

    #[test]
    fn errors() {
        for bad in ["${A", "${}", "${A:x}", "'open", "\"open", "${A:-x"] {
            assert!(expand(bad, '\\', &env).is_err(), "{bad}");
        }
        assert_eq!(expand("${NOPE:?need it}", '\\', &env).unwrap_err().0, "NOPE: need it");
        assert!(expand("${A:?x}", '\\', &env).is_ok());
    }
}
