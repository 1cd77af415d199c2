//! Request handlers, one module per resource.

pub mod analysis;
pub mod build;
pub mod containers;
pub mod exec;
pub mod images;
pub mod networks;
pub mod swarm;
pub mod system;
pub mod volumes;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON response.
pub fn json<T: Serialize>(v: &T) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(axum::body::Body::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// 200 with no body (dockerd's answer to swarm and node changes).
pub fn ok_empty() -> Response {
    StatusCode::OK.into_response()
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Parses a JSON request body; errors read as Docker's.
///
/// `null` anywhere means what it means to Go's decoder: the field's zero value, the same as
/// leaving it out (Go SDKs send `"Labels": null`, `"Binds": null` for every unset map and list).
/// So nulls are dropped before the typed parse, for every body of every endpoint.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    from_json_value(json_value(body)?)
}

/// A request body as a JSON value, nulls dropped (see [`json_body`]).
pub fn json_value(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("invalid JSON: got EOF while reading request body"));
    }
    // One value, then nothing but white space (dockerd 25's "unexpected content after JSON";
    // the value's own syntax errors in Go's words).
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    let mut v = match values.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(ApiError::bad_request(format!("invalid JSON: {}", go_json_error(body, &e)))),
        None => return Err(ApiError::bad_request("invalid JSON: got EOF while reading request body")),
    };
    if !body[values.byte_offset()..].iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("unexpected content after JSON"));
    }
    drop_nulls(&mut v);
    Ok(v)
}

pub fn from_json_value<T: DeserializeOwned>(mut v: serde_json::Value) -> Result<T, ApiError> {
    canonical_keys::<T>(&mut v);
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

/// Go's decoder matches object keys to fields case-insensitively (docker-py sends
/// `detachKeys` for `DetachKeys`): a top-level key that is not a field of `T` but matches
/// one ignoring case is renamed to it (an exact key wins, as in Go).
fn canonical_keys<T: DeserializeOwned>(v: &mut serde_json::Value) {
    let serde_json::Value::Object(m) = v else { return };
    let names = crate::shape::field_names::<T>();
    let wrong: Vec<String> = m.keys().filter(|k| !names.contains(&k.as_str())).cloned().collect();
    for k in wrong {
        if let Some(n) = names.iter().find(|n| n.eq_ignore_ascii_case(&k))
            && !m.contains_key(*n)
            && let Some(val) = m.remove(&k)
        {
            m.insert(n.to_string(), val);
        }
    }
}

/// A JSON syntax error worded as Go's decoder words it (clients and tests match on
/// "invalid character 'i' looking for beginning of object key string").
fn go_json_error(body: &[u8], e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => return "unexpected EOF".into(),
        serde_json::error::Category::Syntax => {}
        _ => return e.to_string(),
    }
    let msg = e.to_string();
    let context = [
        ("key must be a string", "looking for beginning of object key string"),
        ("expected value", "looking for beginning of value"),
        ("expected `:`", "after object key"),
        ("expected `,` or `}`", "after object key:value pair"),
        ("expected `,` or `]`", "after array element"),
        ("trailing characters", "after top-level value"),
    ]
    .iter()
    .find(|(serde, _)| msg.contains(serde))
    .map(|(_, go)| *go);
    // The byte at the error's line and column (1-based).
    let line_start = body.split(|b| *b == b'\n').take(e.line().saturating_sub(1)).map(|l| l.len() + 1).sum::<usize>();
    let at = body.get(line_start + e.column().saturating_sub(1)).copied();
    match (context, at) {
        (Some(ctx), Some(c)) if c.is_ascii_graphic() || c == b' ' => format!("invalid character '{}' {ctx}", c as char),
        _ => msg,
    }
}

/// Removes object members whose value is `null`, at every depth (iteratively: a body's depth is
/// the client's choice; serde_json already bounds it at 128 when parsing).
pub fn drop_nulls(v: &mut serde_json::Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|_, x| !x.is_null());
                stack.extend(m.values_mut());
            }
            serde_json::Value::Array(a) => stack.extend(a.iter_mut()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models as m;

    #[test]
    fn keys_match_fields_ignoring_case_as_in_go() {
        let c: m::ExecConfig = json_body(br#"{"detachKeys":"ctrl-p","cmd":["true"],"Tty":true}"#).unwrap();
        assert_eq!(c.detach_keys.as_deref(), Some("ctrl-p"));
        assert_eq!(c.cmd, Some(vec!["true".to_string()]));
        assert_eq!(c.tty, Some(true));
        // The exact key wins over one that differs in case.
        let c: m::ExecConfig = json_body(br#"{"tty":false,"Tty":true}"#).unwrap();
        assert_eq!(c.tty, Some(true));
    }

    /// Every optional member of every request body, sent as `null` the way Go SDKs send them,
    /// parses as if it were absent.
    #[test]
    fn nulls_read_as_absent_in_every_body() {
        /// Every member the type knows (asked of its `Deserialize` impl), each `null`.
        fn all_null<T: serde::de::DeserializeOwned>() -> Vec<u8> {
            let names = crate::shape::field_names::<T>();
            assert!(!names.is_empty(), "{} has no fields?", std::any::type_name::<T>());
            let o: serde_json::Map<String, serde_json::Value> =
                names.iter().map(|k| (k.to_string(), serde_json::Value::Null)).collect();
            serde_json::to_vec(&o).unwrap()
        }
        json_body::<m::ContainerCreateBody>(&all_null::<m::ContainerCreateBody>()).unwrap();
        json_body::<m::HostConfig>(&all_null::<m::HostConfig>()).unwrap();
        json_body::<m::EndpointSettings>(&all_null::<m::EndpointSettings>()).unwrap();
        json_body::<m::NetworkCreateRequest>(&all_null::<m::NetworkCreateRequest>()).unwrap_err(); // Name is required
        json_body::<m::Ipam>(&all_null::<m::Ipam>()).unwrap();
        json_body::<m::AuthConfig>(&all_null::<m::AuthConfig>()).unwrap();
        json_body::<m::ContainerCreateBody>(
            br#"{"Image":"x","Labels":null,"Env":null,"HostConfig":{"Binds":null,"PortBindings":null,
                "RestartPolicy":null,"LogConfig":{"Type":"json-file","Config":null}},
                "NetworkingConfig":{"EndpointsConfig":null}}"#,
        )
        .unwrap();
        json_body::<m::ContainerUpdateBody>(&all_null::<m::ContainerUpdateBody>()).unwrap();
        json_body::<m::ExecConfig>(&all_null::<m::ExecConfig>()).unwrap();
        json_body::<m::NetworkCreateRequest>(
            br#"{"Name":"n","Labels":null,"Options":null,"IPAM":{"Config":null,"Options":null}}"#,
        )
        .unwrap();
        json_body::<m::NetworkConnectRequest>(br#"{"Container":"c","EndpointConfig":null}"#).unwrap();
        json_body::<m::NetworkDisconnectRequest>(br#"{"Container":"c","Force":null}"#).unwrap();
        json_body::<m::VolumeCreateOptions>(&all_null::<m::VolumeCreateOptions>()).unwrap();
        json_body::<m::ExecStartConfig>(&all_null::<m::ExecStartConfig>()).unwrap();
        let msg = |b: &[u8]| json_body::<m::ContainerCreateBody>(b).unwrap_err().0.message;
        assert!(msg(b"").contains("got EOF while reading request body"));
        assert!(msg(b"{").contains("unexpected EOF"));
        assert!(msg(b"{invalid json").contains("invalid character 'i' looking for beginning of object key string"));
        assert!(msg(b"{\"Image\" 1}").contains("invalid character '1' after object key"), "{}", msg(b"{\"Image\" 1}"));
        // One value only, as dockerd 25 reads a body; white space after it is fine.
        assert_eq!(msg(b"{} trailing content"), "unexpected content after JSON");
        assert_eq!(msg(b"{}{}"), "unexpected content after JSON");
        json_body::<m::ExecStartConfig>(b"{} \n\t").unwrap();
        let mut deep = serde_json::json!({"a": {"b": [{"c": null, "d": 1}, null]}, "e": null});
        drop_nulls(&mut deep);
        assert_eq!(deep, serde_json::json!({"a": {"b": [{"d": 1}, null]}}));
    }
}
