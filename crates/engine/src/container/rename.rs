//! The name index (name → ID) kept beside the records: a name reserved at create, released at
//! remove, moved by `docker rename` (with the container's links and its DNS name on user
//! networks).

use std::sync::Arc;

use skiff_image::db::Durability;

use super::{Containers, names};
use crate::error::{EngineError, Result};

impl Containers {
    fn rename_index(&self, old: &str, new: &str, id: &str) -> Result<()> {
        let mut names = self.names.write().expect("names lock");
        if let Some(other) = names.get(new)
            && other != id
        {
            return Err(EngineError::conflict(format!(
                "Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        names.remove(old);
        names.insert(new.to_string(), id.to_string());
        Ok(())
    }

    /// `docker rename`.
    pub fn rename(self: &Arc<Self>, key: &str, new: &str) -> Result<()> {
        let new = new.strip_prefix('/').unwrap_or(new);
        names::validate(new)?;
        let c = self.get(key)?;
        let old = c.name();
        if old == new {
            return Err(EngineError::invalid(
                "Renaming a container with the same name as its current name".to_string(),
            ));
        }
        self.rename_index(&old, new, &c.id)?;
        let rec = self.update(&c, Durability::Sync, |r| r.name = new.to_string())?;
        // After the record: the renamed container's own links take its new name as parent.
        self.rename_links(&old, new);
        {
            let (networks, id, new) = (self.networks.clone(), c.id.clone(), new.to_string());
            self.spawn_owned(async move { networks.rename(&id, &new).await });
        }
        self.publish_with(&rec, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    pub(super) fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        let mut names = self.names.write().expect("names lock");
        if let Some(other) = names.get(name) {
            return Err(EngineError::conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        names.insert(name.to_string(), id.to_string());
        Ok(())
    }

    pub(super) fn release_name(&self, name: &str) {
        self.names.write().expect("names lock").remove(name);
    }
}
