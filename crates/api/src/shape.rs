//! Response shapes as dockerd's: Go marshals every field of a struct that has no `omitempty`,
//! `null` when unset, and clients index into them (docker-py reads
//! `attrs["NetworkSettings"]["Networks"][n]["Aliases"]`). The Engine API models skip unset
//! fields; [`complete`] puts them back as `null`.

use serde::de::{self, DeserializeOwned, Visitor};

/// The JSON member names of a struct type, asked of its `Deserialize` implementation.
pub fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields(std::cell::Cell<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> de::Deserializer<'de> for &Fields {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
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
    f.0.get()
}

/// Adds every member `T` knows that `v` (an object) lacks, as `null`.
pub fn complete<T: DeserializeOwned>(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        for k in field_names::<T>() {
            m.entry(k.to_string()).or_insert(serde_json::Value::Null);
        }
    }
}

/// A container's inspect document in dockerd's shape.
pub fn container_inspect(v: &mut serde_json::Value) {
    use bollard_stubs::models as m;
    complete::<m::ContainerInspectResponse>(v);
    complete::<m::HostConfig>(&mut v["HostConfig"]);
    complete::<m::ContainerConfig>(&mut v["Config"]);
    complete::<m::ContainerState>(&mut v["State"]);
    complete::<m::NetworkSettings>(&mut v["NetworkSettings"]);
    if let Some(nets) = v["NetworkSettings"]["Networks"].as_object_mut() {
        for n in nets.values_mut() {
            complete::<m::EndpointSettings>(n);
        }
    }
}

/// An image's inspect document in dockerd's shape: its configs carry every member (`OnBuild`,
/// `Labels`... as `null` when unset), as Go's encoder writes them.
pub fn image_inspect(v: &mut serde_json::Value) {
    use bollard_stubs::models as m;
    for k in ["Config", "ContainerConfig"] {
        if v.get(k).is_some_and(|c| c.is_object()) {
            complete::<m::ImageConfig>(&mut v[k]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_members_come_back_as_null() {
        assert!(field_names::<bollard_stubs::models::EndpointSettings>().contains(&"Aliases"));
        let mut v = serde_json::json!({
            "Id": "x", "HostConfig": {"NetworkMode": "bridge"}, "Config": {}, "State": {},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.0.0.2"}}}
        });
        container_inspect(&mut v);
        let ep = &v["NetworkSettings"]["Networks"]["bridge"];
        for k in ["Aliases", "DriverOpts", "IPAMConfig", "Links"] {
            assert!(ep.get(k).is_some_and(|x| x.is_null()), "{k}: {ep}");
        }
        assert_eq!(ep["IPAddress"], "10.0.0.2");
        assert!(v["HostConfig"].get("Binds").is_some_and(|b| b.is_null()));
        assert_eq!(v["HostConfig"]["NetworkMode"], "bridge");
    }

    #[test]
    fn image_configs_carry_every_member() {
        let mut v = serde_json::json!({"Id": "sha256:x", "Config": {"Cmd": ["sh"]}});
        image_inspect(&mut v);
        assert!(v["Config"].get("OnBuild").is_some_and(|x| x.is_null()));
        assert_eq!(v["Config"]["Cmd"][0], "sh");
        assert!(v.get("ContainerConfig").is_none());
    }
}
