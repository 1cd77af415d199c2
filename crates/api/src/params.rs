//! Query strings as Docker's API uses them: repeated keys, `1`/`true` booleans, and the
//! JSON-encoded `filters` parameter (both `{"k":["v"]}` and the old `{"k":{"v":true}}`).

use std::collections::BTreeMap;

use crate::error::ApiError;

#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Params {
        Params(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of a key, as Go's `r.FormValue` reads it.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    /// A JSON-encoded parameter (`buildargs`, `labels`, `cachefrom`…): absent, empty or `null`
    /// is `T`'s default, as for Go's decoder.
    pub fn json<T: serde::de::DeserializeOwned + Default>(&self, k: &str) -> Result<T, ApiError> {
        let Some(raw) = self.get(k).filter(|s| !s.trim().is_empty()) else { return Ok(T::default()) };
        let mut v: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid {k}: {e}")))?;
        crate::handlers::drop_nulls(&mut v);
        if v.is_null() {
            return Ok(T::default());
        }
        serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid {k}: {e}")))
    }

    pub fn all(&self, k: &str) -> Vec<String> {
        self.0.iter().filter(|(key, _)| key == k).map(|(_, v)| v.clone()).collect()
    }

    pub fn string(&self, k: &str) -> Option<String> {
        self.get(k).filter(|v| !v.is_empty()).map(str::to_string)
    }

    /// `1`, `true`, `True` (and a bare key) are true; absent means `default`.
    pub fn bool(&self, k: &str, default: bool) -> bool {
        match self.get(k) {
            None => default,
            Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "0" | "false" | "no"),
        }
    }

    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {v:?}"))),
        }
    }

    /// `?repo=&tag=` (commit, import): the reference to record, `latest` when no tag is given;
    /// none without a repo.
    pub fn repo_tag(&self) -> Result<Option<skiff_engine::types::Reference>, ApiError> {
        let Some(repo) = self.string("repo") else { return Ok(None) };
        let r = skiff_engine::types::Reference::parse_normalized(&repo)
            .map_err(|err| ApiError::bad_request(err.to_string()))?;
        Ok(Some(match self.string("tag") {
            Some(t) => r.with_tag(&t).map_err(|err| ApiError::bad_request(err.to_string()))?,
            None => r.with_default_tag(),
        }))
    }

    /// `?h=&w=` of a resize, clamped to what a terminal size holds.
    pub fn terminal_size(&self) -> Result<(u16, u16), ApiError> {
        let dim = |k: &str| -> Result<u16, ApiError> { Ok(self.int(k)?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16) };
        Ok((dim("h")?, dim("w")?))
    }

    pub fn filters(&self) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
        parse_filters(self.get("filters").unwrap_or(""))
    }
}

pub fn parse_filters(raw: &str) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let mut out = BTreeMap::new();
    if raw.trim().is_empty() {
        return Ok(out);
    }
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    if v.is_null() {
        return Ok(out);
    }
    let obj = v.as_object().ok_or_else(|| ApiError::bad_request("invalid filter: expected an object"))?;
    for (k, vals) in obj {
        let list: Vec<String> = match vals {
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect(),
            serde_json::Value::Object(o) => {
                o.iter().filter(|(_, b)| b.as_bool().unwrap_or(false)).map(|(s, _)| s.clone()).collect()
            }
            serde_json::Value::String(s) => vec![s.clone()],
            _ => {
                return Err(ApiError::bad_request(format!("invalid filter value for {k}")));
            }
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_filters() {
        let p = Params::parse(Some(
            "all=1&names=a&names=b&force=false&filters=%7B%22label%22%3A%7B%22x%3Dy%22%3Atrue%7D%7D",
        ));
        assert!(p.bool("all", false));
        assert!(!p.bool("force", true));
        assert!(p.bool("missing", true));
        assert_eq!(p.all("names"), vec!["a", "b"]);
        assert_eq!(p.filters().unwrap().get("label").unwrap(), &vec!["x=y".to_string()]);
        assert_eq!(parse_filters(r#"{"status":["running","exited"]}"#).unwrap()["status"].len(), 2);
        assert!(parse_filters("{").is_err());
        assert!(parse_filters("[1]").is_err());
        assert!(parse_filters(r#"{"a":5}"#).is_err());
        assert!(Params::parse(Some("t=x")).int("t").is_err());
        // Repeated keys: the first wins, as with Go's FormValue.
        assert_eq!(Params::parse(Some("dockerfile=a&dockerfile=b")).get("dockerfile"), Some("a"));
        assert!(parse_filters("null").unwrap().is_empty());
        let p = Params::parse(Some("buildargs=null&labels=%7B%22a%22%3Anull%2C%22b%22%3A%22c%22%7D"));
        assert!(p.json::<BTreeMap<String, String>>("buildargs").unwrap().is_empty());
        assert_eq!(p.json::<BTreeMap<String, String>>("labels").unwrap().len(), 1);
        assert!(p.json::<BTreeMap<String, String>>("missing").unwrap().is_empty());
    }
}
