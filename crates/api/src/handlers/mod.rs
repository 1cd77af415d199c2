//! Request handlers, one module per resource.

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

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Parses a JSON request body; errors read as Docker's.
///
/// `null` anywhere means what it means to Go's decoder: the field's zero value, the same as
/// leaving it out (Go SDKs send `"Labels": null`, `"Binds": null` for every unset map and list).
/// So nulls are dropped before the typed parse, for every body of every endpoint.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("invalid JSON: request body is empty"));
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    drop_nulls(&mut v);
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
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

    /// Every optional member of every request body, sent as `null` the way Go SDKs send them,
    /// parses as if it were absent.
    #[test]
    fn nulls_read_as_absent_in_every_body() {
        /// Every member the type knows (asked of its `Deserialize` impl), each `null`.
        fn all_null<T: serde::de::DeserializeOwned>() -> Vec<u8> {
            struct Fields(std::cell::Cell<&'static [&'static str]>);
            #[derive(Debug)]
            struct Stop;
            impl std::fmt::Display for Stop {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("stop")
                }
            }
            impl std::error::Error for Stop {}
            impl serde::de::Error for Stop {
                fn custom<M: std::fmt::Display>(_: M) -> Self {
                    Stop
                }
            }
            impl<'de> serde::Deserializer<'de> for &Fields {
                type Error = Stop;
                fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
                    Err(Stop)
                }
                fn deserialize_struct<V: serde::de::Visitor<'de>>(
                    self,
                    _: &'static str,
                    fields: &'static [&'static str],
                    _: V,
                ) -> Result<V::Value, Stop> {
                    self.0.set(fields);
                    Err(Stop)
                }
                serde::forward_to_deserialize_any! {
                    bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
                    option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
                    ignored_any
                }
            }
            let f = Fields(std::cell::Cell::new(&[]));
            let _ = T::deserialize(&f);
            assert!(!f.0.get().is_empty(), "{} has no fields?", std::any::type_name::<T>());
            let o: serde_json::Map<String, serde_json::Value> =
                f.0.get().iter().map(|k| (k.to_string(), serde_json::Value::Null)).collect();
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
        assert!(json_body::<m::ContainerCreateBody>(b"").is_err());
        assert!(json_body::<m::ContainerCreateBody>(b"{").is_err());
        let mut deep = serde_json::json!({"a": {"b": [{"c": null, "d": 1}, null]}, "e": null});
        drop_nulls(&mut deep);
        assert_eq!(deep, serde_json::json!({"a": {"b": [{"d": 1}, null]}}));
    }
}
