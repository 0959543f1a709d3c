//! Which models a chat may name, and the one it gets when it names none: the one place
//! the routes that list models and the check on `model_id` read.

/// The model ids this server offers (`--allowed-models`) and its default model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCatalog {
    /// Ids a chat may name; empty: any.
    allowed: Vec<String>,
    /// The model a chat without `model_id` gets (the provider's own model).
    default: String,
}

impl ModelCatalog {
    /// `allowed` as the flag gave it (blank entries dropped, spaces trimmed); `default` is
    /// the provider's model.
    pub fn new(allowed: &[String], default: impl Into<String>) -> Self {
        ModelCatalog {
            allowed: allowed
                .iter()
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect(),
            default: default.into(),
        }
    }

    /// Whether a chat may name `id`.
    pub fn allows(&self, id: &str) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|m| m == id)
    }

    /// The ids a client may offer: the allowed list, or just the default when any is allowed
    /// (the server cannot know every name its provider takes).
    pub fn offered(&self) -> &[String] {
        if self.allowed.is_empty() {
            std::slice::from_ref(&self.default)
        } else {
            &self.allowed
        }
    }

    pub fn default_model(&self) -> &str {
        &self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_the_flag_or_the_default_alone() {
        let any = ModelCatalog::new(&[], "gpt-4o-mini");
        assert!(any.allows("anything"));
        assert_eq!(any.offered(), ["gpt-4o-mini"]);
        let listed = ModelCatalog::new(&[" a".into(), String::new(), "b ".into()], "a");
        assert_eq!(listed.offered(), ["a", "b"]);
        assert!(listed.allows("b"));
        assert!(!listed.allows("c"));
        assert!(!listed.allows(""));
        assert_eq!(listed.default_model(), "a");
    }
}
