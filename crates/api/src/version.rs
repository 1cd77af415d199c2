//! API version negotiation: `/v1.NN/...` and unversioned paths route the same; the version is
//! checked here once and kept in the request for the (few) version-dependent adapters.

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, Uri};
use skiff_engine::system::{API_VERSION, MIN_API_VERSION};

/// The API version a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl ApiVersion {
    /// Whether the request speaks an API older than `v` (`"1.40"`).
    pub fn below(self, v: &str) -> bool {
        ApiVersion::parse(v).is_some_and(|v| self < v)
    }
}

/// The adapters: how answers and requests differ for older clients, kept here rather than as
/// version checks spread through the handlers.
pub mod adapt {
    use super::ApiVersion;

    /// `GET /info`: before 1.25 it named an execution driver.
    pub fn info(v: ApiVersion, info: &mut serde_json::Value) {
        if v.below("1.25")
            && let Some(o) = info.as_object_mut()
        {
            o.insert("ExecutionDriver".into(), "<not supported>".into());
        }
    }

    /// `GET /containers/{id}/json`: before 1.45 a user network's `Aliases` also listed the
    /// container's short ID (now only in `DNSNames`); before 1.20 the resources sat in `Config`.
    pub fn container_inspect(v: ApiVersion, c: &mut serde_json::Value) {
        if v.below("1.45") {
            let short: String = c["Id"].as_str().unwrap_or("").chars().take(12).collect();
            if let Some(nets) = c["NetworkSettings"]["Networks"].as_object_mut() {
                for ep in nets.values_mut().filter(|ep| ep["DNSNames"].is_array()) {
                    let mut aliases = ep["Aliases"].as_array().cloned().unwrap_or_default();
                    if !short.is_empty() && !aliases.iter().any(|a| a == short.as_str()) {
                        aliases.push(short.clone().into());
                    }
                    ep["Aliases"] = aliases.into();
                }
            }
        }
        if !v.below("1.20") {
            return;
        }
        let hc = c["HostConfig"].clone();
        if let Some(cfg) = c["Config"].as_object_mut() {
            for (k, from) in [
                ("Cpuset", "CpusetCpus"),
                ("CpuShares", "CpuShares"),
                ("Memory", "Memory"),
                ("MemorySwap", "MemorySwap"),
            ] {
                cfg.insert(k.into(), hc.get(from).cloned().unwrap_or(serde_json::Value::Null));
            }
        }
    }

    /// `POST /containers/{id}/update`: `PidsLimit` came with 1.40; older clients' value is
    /// ignored.
    pub fn container_update(v: ApiVersion, u: &mut bollard_stubs::models::ContainerUpdateBody) {
        if v.below("1.40") {
            u.pids_limit = None;
        }
    }

    /// `POST /containers/create`: before 1.40 a container that names no IPC mode got a
    /// shareable /dev/shm (dockerd's default then).
    /// Before 1.40 `BindOptions.NonRecursive` did not exist (ignored). Before 1.41 on cgroup v1
    /// the default cgroup namespace was the host's, whatever the daemon's default.
    /// From 1.44 read-only binds are read-only all the way down by default; older clients
    /// keep the bind-only default, and the two 1.44 options do not exist for them
    /// (`ReadOnlyNonRecursive` ignored, `ReadOnlyForceRecursive` refused, as dockerd does).
    pub fn container_create(
        v: ApiVersion,
        hc: &mut bollard_stubs::models::HostConfig,
        cgroup_v2: bool,
    ) -> Result<(), crate::error::ApiError> {
        if v.below("1.40") {
            if hc.ipc_mode.as_deref().unwrap_or("").is_empty() {
                hc.ipc_mode = Some("shareable".into());
            }
            for m in hc.mounts.iter_mut().flatten() {
                if let Some(b) = &mut m.bind_options {
                    b.non_recursive = None;
                }
            }
        }
        if v.below("1.41") && !cgroup_v2 {
            use bollard_stubs::models::HostConfigCgroupnsModeEnum as Ns;
            if matches!(hc.cgroupns_mode, None | Some(Ns::EMPTY)) {
                hc.cgroupns_mode = Some(Ns::HOST);
            }
        }
        if read_only_binds_non_recursive(v) {
            for b in hc.mounts.iter_mut().flatten().filter_map(|m| m.bind_options.as_mut()) {
                b.read_only_non_recursive = None;
                if b.read_only_force_recursive == Some(true) {
                    return Err(crate::error::ApiError::bad_request(
                        "BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether a client predates dockerd 25's reworded errors (API 1.44), e.g. a refused
    /// removal's "You cannot remove a running container".
    pub fn legacy_error_words(v: ApiVersion) -> bool {
        v.below("1.44")
    }

    /// Whether a client's read-only binds are read-only at their top only (before 1.44).
    pub fn read_only_binds_non_recursive(v: ApiVersion) -> bool {
        v.below("1.44")
    }

    /// `POST /containers/{id}/kill`: before 1.20 killing a container that is not running was
    /// not an error.
    pub fn kill_not_running_is_ok(v: ApiVersion) -> bool {
        v.below("1.20")
    }
}

/// Splits `/v1.44/containers/json` into (`1.44`, `/containers/json`).
pub fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(i) = rest.find('/')
    {
        let v = &rest[..i];
        if v.contains('.') && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return (Some(v), &rest[i..]);
        }
    }
    (None, path)
}

/// Rewrites the URI to the unversioned path, or answers 400 for versions we do not serve.
pub fn strip(mut req: Request<Body>) -> Result<Request<Body>, Box<Response<Body>>> {
    // Repeated slashes mean one, as dockerd's router cleans them (`docker rm --link /a/b`
    // asks for `/containers//a/b`).
    let mut path = req.uri().path().to_string();
    while path.contains("//") {
        path = path.replace("//", "/");
    }
    let (v, rest) = split_version(&path);
    let max = ApiVersion::parse(API_VERSION).expect("valid");
    let min = ApiVersion::parse(MIN_API_VERSION).expect("valid");
    let version = match v {
        None => max,
        Some(v) => {
            let Some(parsed) = ApiVersion::parse(v) else {
                return Err(Box::new(error(StatusCode::BAD_REQUEST, &format!("invalid API version {v:?}"))));
            };
            if parsed > max {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    &format!("client version {v} is too new. Maximum supported API version is {API_VERSION}"),
                )));
            }
            if parsed < min {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                    ),
                )));
            }
            parsed
        }
    };
    let rest = if req.method() == axum::http::Method::DELETE { rest.to_string() } else { escape_container_key(rest) };
    let new_uri = match req.uri().query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    if let Ok(u) = new_uri.parse::<Uri>() {
        *req.uri_mut() = u;
    }
    req.extensions_mut().insert(version);
    Ok(req)
}

/// What follows a container's key in its routes.
const CONTAINER_ACTIONS: &[&str] = &[
    "json",
    "top",
    "logs",
    "changes",
    "export",
    "stats",
    "resize",
    "start",
    "stop",
    "restart",
    "kill",
    "update",
    "rename",
    "pause",
    "unpause",
    "attach",
    "attach/ws",
    "wait",
    "archive",
    "exec",
    "copy",
];

/// `/containers/PARENT/ALIAS/json` names the container a legacy link calls `PARENT/ALIAS`
/// (dockerd's routes take names with slashes): the key's slashes are escaped so that the
/// route's `{id}` holds all of it.
fn escape_container_key(path: &str) -> String {
    let Some(rest) = path.strip_prefix("/containers/") else { return path.to_string() };
    for action in CONTAINER_ACTIONS {
        if let Some(key) = rest.strip_suffix(action).and_then(|k| k.strip_suffix('/'))
            && key.contains('/')
            && !key.is_empty()
        {
            return format!("/containers/{}/{action}", key.replace('/', "%2F"));
        }
    }
    path.to_string()
}

pub(crate) fn error(status: StatusCode, msg: &str) -> Response<Body> {
    let body = serde_json::to_vec(&serde_json::json!({ "message": msg })).unwrap_or_default();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_in_container_paths() {
        assert_eq!(escape_container_key("/containers/app/db/json"), "/containers/app%2Fdb/json");
        assert_eq!(escape_container_key("/containers/app/db/attach/ws"), "/containers/app%2Fdb/attach/ws");
        assert_eq!(escape_container_key("/containers/app/json"), "/containers/app/json");
        assert_eq!(escape_container_key("/containers/json"), "/containers/json");
        assert_eq!(escape_container_key("/containers/create"), "/containers/create");
        assert_eq!(escape_container_key("/images/a/b/json"), "/images/a/b/json");
    }

    #[test]
    fn splits_versions() {
        assert_eq!(split_version("/v1.44/containers/json"), (Some("1.44"), "/containers/json"));
        assert_eq!(split_version("/containers/json"), (None, "/containers/json"));
        assert_eq!(split_version("/volumes/v1.2"), (None, "/volumes/v1.2"));
        assert_eq!(split_version("/vx/containers"), (None, "/vx/containers"));
    }

    #[test]
    fn rejects_bad_versions() {
        let req = |p: &str| Request::builder().uri(p).body(Body::empty()).unwrap();
        assert!(strip(req("/v9.99/_ping")).is_err());
        assert!(strip(req("/v1.0/_ping")).is_err());
        assert!(strip(req("/v1.x/_ping")).is_ok()); // not a version: an unknown path, 404 later
        let ok = strip(req("/v1.44/containers/json?all=1")).unwrap();
        assert_eq!(ok.uri().path(), "/containers/json");
        assert_eq!(ok.uri().query(), Some("all=1"));
        assert_eq!(ok.extensions().get::<ApiVersion>(), Some(&ApiVersion(1, 44)));
        assert_eq!(strip(req("/v1.41/containers//a/b?link=1")).unwrap().uri().path(), "/containers/a/b");
    }
}
