//! Output formatting as the docker CLI does it: `--format` Go templates (the subset people use:
//! fields, `json`, `index`, `join`, `upper`, `lower`, `len`, `printf`, `range`, `if`), `table`
//! formats, tab-aligned tables, human sizes and ages.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Vec<Expr>),
    Range(Vec<Expr>, Vec<Node>),
    If(Vec<Expr>, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// `.A.B` (empty: `.`).
    Field(Vec<String>),
    Str(String),
    Num(f64),
    Func(String),
}

#[derive(Debug)]
pub struct Template {
    nodes: Vec<Node>,
}

fn tokenize(s: &str) -> Result<Vec<Expr>, String> {
    let mut out = Vec::new();
    let mut chars = s.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '"' || c == '`' {
            chars.next();
            let mut v = String::new();
            let mut closed = false;
            while let Some(ch) = chars.next() {
                if ch == c {
                    closed = true;
                    break;
                }
                if ch == '\\' && c == '"' {
                    match chars.next() {
                        Some('n') => v.push('\n'),
                        Some('t') => v.push('\t'),
                        Some(o) => v.push(o),
                        None => {}
                    }
                    continue;
                }
                v.push(ch);
            }
            if !closed {
                return Err("unterminated string".into());
            }
            out.push(Expr::Str(v));
            continue;
        }
        let mut word = String::new();
        while let Some(&ch) = chars.peek() {
            if ch.is_whitespace() {
                break;
            }
            word.push(ch);
            chars.next();
        }
        if word == "|" {
            out.push(Expr::Func("|".into()));
        } else if let Some(rest) = word.strip_prefix('.') {
            out.push(Expr::Field(if rest.is_empty() { vec![] } else { rest.split('.').map(str::to_string).collect() }));
        } else if let Ok(n) = word.parse::<f64>() {
            out.push(Expr::Num(n));
        } else {
            out.push(Expr::Func(word));
        }
    }
    Ok(out)
}

fn parse_nodes(src: &str, pos: &mut usize, until: &[&str]) -> Result<(Vec<Node>, String), String> {
    let mut nodes = Vec::new();
    while *pos < src.len() {
        let rest = &src[*pos..];
        match rest.find("{{") {
            None => {
                nodes.push(Node::Text(rest.to_string()));
                *pos = src.len();
            }
            Some(i) => {
                if i > 0 {
                    nodes.push(Node::Text(rest[..i].to_string()));
                }
                let after = &rest[i + 2..];
                let end = after.find("}}").ok_or("unclosed action")?;
                let inner = after[..end].trim().trim_start_matches('-').trim_end_matches('-').trim().to_string();
                *pos += i + 2 + end + 2;
                let word = inner.split_whitespace().next().unwrap_or("");
                if until.contains(&word) {
                    return Ok((nodes, inner));
                }
                match word {
                    "range" => {
                        let pipe = tokenize(&inner[5..])?;
                        let (body, end) = parse_nodes(src, pos, &["end"])?;
                        if end != "end" {
                            return Err("range without end".into());
                        }
                        nodes.push(Node::Range(pipe, body));
                    }
                    "if" => {
                        let pipe = tokenize(&inner[2..])?;
                        let (body, end) = parse_nodes(src, pos, &["end", "else"])?;
                        let otherwise = if end == "else" {
                            let (e, end2) = parse_nodes(src, pos, &["end"])?;
                            if end2 != "end" {
                                return Err("if without end".into());
                            }
                            e
                        } else if end == "end" {
                            vec![]
                        } else {
                            return Err("if without end".into());
                        };
                        nodes.push(Node::If(pipe, body, otherwise));
                    }
                    _ => nodes.push(Node::Action(tokenize(&inner)?)),
                }
            }
        }
    }
    if until.is_empty() { Ok((nodes, String::new())) } else { Err(format!("missing {{{{{}}}}}", until[0])) }
}

fn field<'a>(v: &'a Value, path: &[String]) -> Value {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return Value::Null,
        }
    }
    let _: &'a Value = cur;
    cur.clone()
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How Go's text/template prints a value.
pub fn plain(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 1e21 { format!("{}", f as i64) } else { f.to_string() }
            }
        }
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            format!("map[{}]", o.iter().map(|(k, v)| format!("{k}:{}", plain(v))).collect::<Vec<_>>().join(" "))
        }
    }
}

fn eval_args(dot: &Value, args: &[Expr]) -> Result<Vec<Value>, String> {
    args.iter()
        .map(|a| match a {
            Expr::Field(p) => Ok(field(dot, p)),
            Expr::Str(s) => Ok(Value::String(s.clone())),
            Expr::Num(n) => Ok(serde_json::json!(n)),
            Expr::Func(f) => call(f, dot, &[]),
        })
        .collect()
}

fn call(f: &str, dot: &Value, args: &[Expr]) -> Result<Value, String> {
    let vals = eval_args(dot, args)?;
    let arg = |i: usize| vals.get(i).cloned().unwrap_or(Value::Null);
    Ok(match f {
        "json" => Value::String(serde_json::to_string(&arg(0)).unwrap_or_default()),
        "upper" => Value::String(plain(&arg(0)).to_uppercase()),
        "lower" => Value::String(plain(&arg(0)).to_lowercase()),
        "title" => {
            let s = plain(&arg(0));
            let mut c = s.chars();
            Value::String(c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default())
        }
        "len" => serde_json::json!(match arg(0) {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            Value::String(s) => s.len(),
            _ => 0,
        }),
        "join" => {
            let sep = plain(&arg(1));
            match arg(0) {
                Value::Array(a) => Value::String(a.iter().map(plain).collect::<Vec<_>>().join(&sep)),
                other => Value::String(plain(&other)),
            }
        }
        "index" => {
            let mut cur = arg(0);
            for k in vals.iter().skip(1) {
                cur = match (&cur, k) {
                    (Value::Object(o), k) => o.get(&plain(k)).cloned().unwrap_or(Value::Null),
                    (Value::Array(a), Value::Number(n)) => {
                        a.get(n.as_u64().unwrap_or(0) as usize).cloned().unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                };
            }
            cur
        }
        "println" => Value::String(format!("{}\n", vals.iter().map(plain).collect::<Vec<_>>().join(" "))),
        "print" => Value::String(vals.iter().map(plain).collect::<Vec<_>>().join("")),
        "printf" => {
            let fmt = plain(&arg(0));
            let mut out = String::new();
            let mut it = vals.iter().skip(1);
            let mut chars = fmt.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '%' {
                    match chars.next() {
                        Some('%') => out.push('%'),
                        Some(_) => out.push_str(&it.next().map(plain).unwrap_or_default()),
                        None => out.push('%'),
                    }
                } else {
                    out.push(c);
                }
            }
            Value::String(out)
        }
        "truncate" => {
            let s = plain(&arg(0));
            let n = arg(1).as_f64().unwrap_or(0.0) as usize;
            Value::String(s.chars().take(n).collect())
        }
        other => return Err(format!("function \"{other}\" not defined")),
    })
}

fn eval_pipe(dot: &Value, pipe: &[Expr]) -> Result<Value, String> {
    let mut result: Option<Value> = None;
    for cmd in pipe.split(|e| matches!(e, Expr::Func(f) if f == "|")) {
        let Some(first) = cmd.first() else { return Err("empty command".into()) };
        let mut args: Vec<Expr> = cmd[1..].to_vec();
        let v = match first {
            Expr::Func(f) => {
                if let Some(prev) = result.take() {
                    // The previous value becomes the last argument.
                    let mut vals = eval_args(dot, &args)?;
                    vals.push(prev);
                    args = vals.into_iter().map(|v| Expr::Str(plain(&v))).collect();
                }
                call(f, dot, &args)?
            }
            Expr::Field(p) => field(dot, p),
            Expr::Str(s) => Value::String(s.clone()),
            Expr::Num(n) => serde_json::json!(n),
        };
        result = Some(v);
    }
    Ok(result.unwrap_or(Value::Null))
}

fn render(nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&plain(&eval_pipe(dot, p)?)),
            Node::Range(p, body) => match eval_pipe(dot, p)? {
                Value::Array(a) => {
                    for item in &a {
                        render(body, item, out)?;
                    }
                }
                Value::Object(o) => {
                    for (_, item) in &o {
                        render(body, item, out)?;
                    }
                }
                _ => {}
            },
            Node::If(p, yes, no) => {
                if truthy(&eval_pipe(dot, p)?) {
                    render(yes, dot, out)?;
                } else {
                    render(no, dot, out)?;
                }
            }
        }
    }
    Ok(())
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let src = src.replace("\\t", "\t").replace("\\n", "\n");
        let mut pos = 0;
        let (nodes, _) = parse_nodes(&src, &mut pos, &[])?;
        Ok(Template { nodes })
    }

    pub fn render(&self, v: &Value) -> Result<String, String> {
        let mut out = String::new();
        render(&self.nodes, v, &mut out)?;
        Ok(out)
    }
}

/// Tab-separated rows aligned like Go's tabwriter(minwidth 10, padding 3).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                widths[i] = widths[i].max(c.chars().count() + 3).max(10);
            }
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                let pad = widths[i] - c.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Renders items with `--format` (a `table ...` format keeps a header row) or a default table.
pub fn render_list(
    items: &[Value],
    format: Option<&str>,
    default: &str,
    headers: &[(&str, &str)],
) -> Result<String, String> {
    let fmt = format.unwrap_or(default);
    if fmt == "json" {
        return Ok(items.iter().map(|v| serde_json::to_string(v).unwrap_or_default() + "\n").collect());
    }
    let (is_table, body) = match fmt.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start().to_string()),
        None => (false, fmt.to_string()),
    };
    let t = Template::parse(&body)?;
    if !is_table {
        let mut out = String::new();
        for v in items {
            out.push_str(&t.render(v)?);
            out.push('\n');
        }
        return Ok(out);
    }
    // Header: each field's header name.
    let mut header_src = body.clone();
    for (field, name) in headers {
        header_src = header_src.replace(&format!("{{{{.{field}}}}}"), name);
    }
    let mut rows = vec![header_src.replace("\\t", "\t").split('\t').map(|s| s.to_string()).collect::<Vec<_>>()];
    for v in items {
        rows.push(t.render(v)?.split('\t').map(|s| s.to_string()).collect());
    }
    Ok(table(&rows))
}

/// Decimal sizes with three significant digits, as `docker images` prints them.
pub fn human_size(bytes: f64) -> String {
    skiff_common::units::human_size(bytes, 3)
}

/// Binary sizes (`docker stats`): 1.5MiB.
pub fn bytes_size(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{}{}", format!("{v:.2}").trim_end_matches('0').trim_end_matches('.'), units[i])
}

/// "5 seconds", "About an hour", … (Go's units.HumanDuration).
pub fn human_duration(secs: i64) -> String {
    skiff_common::timefmt::human_duration(std::time::Duration::from_secs(secs.max(0) as u64))
}

pub fn since(unix: i64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    format!("{} ago", human_duration(now - unix))
}

/// Go's json.MarshalIndent with four spaces, as `docker inspect` prints.
pub fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser).expect("json serializes");
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates() {
        let v = json!({"Name": "/web", "State": {"Status": "running", "ExitCode": 0}, "Labels": {"a": "b"}, "Args": ["x", "y"]});
        let r = |t: &str| Template::parse(t).unwrap().render(&v).unwrap();
        assert_eq!(r("{{.Name}}"), "/web");
        assert_eq!(r("{{.State.Status}} {{.State.ExitCode}}"), "running 0");
        assert_eq!(r("{{json .Labels}}"), r#"{"a":"b"}"#);
        assert_eq!(r(r#"{{index .Labels "a"}}"#), "b");
        assert_eq!(r(r#"{{join .Args ","}}"#), "x,y");
        assert_eq!(r("{{range .Args}}[{{.}}]{{end}}"), "[x][y]");
        assert_eq!(r("{{if .State.ExitCode}}bad{{else}}ok{{end}}"), "ok");
        assert_eq!(r("{{.Missing}}"), "<no value>");
        assert_eq!(r("{{.Name | upper}}"), "/WEB");
        assert!(Template::parse("{{.Name").is_err());
        assert!(Template::parse("{{range .X}}").is_err());
        assert!(Template::parse("{{nosuch .X}}").unwrap().render(&v).is_err());
    }

    #[test]
    fn tables_and_sizes() {
        let t =
            table(&[vec!["A".into(), "IMAGE".into(), "X".into()], vec!["longer-value".into(), "b".into(), "c".into()]]);
        assert_eq!(t, "A              IMAGE     X\nlonger-value   b         c\n");
        assert_eq!(human_size(1_982_000.0), "1.98MB");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(123_456_789.0), "123MB");
        assert_eq!(bytes_size(740.0 * 1024.0), "740KiB");
    }
}
