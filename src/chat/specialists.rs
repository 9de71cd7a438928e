//! Specialists: who the user chats with (system prompt, model, limits), from
//! `config/specialists.toml` (compiled in; a file in the config folder replaces it).

use std::path::Path;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::Role;

pub const DEFAULT_SPECIALISTS: &str = include_str!("../../config/specialists.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    specialists: Vec<Specialist>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Specialist {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(skip_serializing)]
    pub system_prompt: String,
    /// provider/model; empty means the default model.
    #[serde(default)]
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing)]
    pub fallback_models: Vec<String>,
    /// Roles allowed to use it; empty means every role that may chat.
    #[serde(default, skip_serializing)]
    pub allowed_roles: Vec<String>,
    #[serde(default)]
    pub accepts_images: bool,
}

impl Specialist {
    /// A model named directly (`chat.direct_models`): no prompt, no defaults, no fallbacks.
    pub fn direct(model: &str) -> Self {
        Self {
            id: model.to_owned(),
            name: model.to_owned(),
            description: String::new(),
            system_prompt: String::new(),
            model: model.to_owned(),
            temperature: None,
            max_tokens: None,
            fallback_models: Vec::new(),
            allowed_roles: Vec::new(),
            accepts_images: false,
        }
    }

    /// The model and its fallbacks, in order.
    pub fn chain(&self) -> Vec<String> {
        std::iter::once(self.model.clone())
            .chain(self.fallback_models.iter().cloned())
            .collect()
    }

    pub fn allows(&self, role: Role) -> bool {
        self.allowed_roles.is_empty() || self.allowed_roles.iter().any(|r| r == role.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("specialists.toml: {0}")]
pub struct SpecialistsError(String);

pub struct Specialists {
    list: Vec<Specialist>,
}

impl Specialists {
    /// `dir/specialists.toml` when present, else the shipped list; empty models become
    /// `default_model`.
    pub fn load(dir: &Path, default_model: &str) -> Result<Self, SpecialistsError> {
        let path = dir.join("specialists.toml");
        let text = if path.is_file() {
            std::fs::read_to_string(&path).map_err(|e| SpecialistsError(e.to_string()))?
        } else {
            DEFAULT_SPECIALISTS.to_owned()
        };
        Self::parse(&text, default_model)
    }

    pub fn parse(text: &str, default_model: &str) -> Result<Self, SpecialistsError> {
        use figment::providers::Format;
        let file: File = figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .map_err(|e| SpecialistsError(e.to_string()))?;
        let mut list = file.specialists;
        for s in &mut list {
            if s.model.is_empty() {
                s.model = default_model.to_owned();
            }
            if s.id.is_empty() || s.name.is_empty() {
                return Err(SpecialistsError(
                    "every specialist needs an id and a name".into(),
                ));
            }
            if let Some(bad) = s.allowed_roles.iter().find(|r| Role::parse(r).is_none()) {
                return Err(SpecialistsError(format!("{}: unknown role {bad}", s.id)));
            }
        }
        Ok(Self { list })
    }

    pub fn get(&self, id: &str) -> Option<&Specialist> {
        self.list.iter().find(|s| s.id == id)
    }

    /// Those the role may use.
    pub fn for_role(&self, role: Role) -> impl Iterator<Item = &Specialist> {
        self.list.iter().filter(move |s| s.allows(role))
    }
}
