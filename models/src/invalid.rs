//! Why a model definition or spec cannot be used, naming the part at fault. Packages are checked
//! when they are loaded, so a corrupted or hand-edited file fails before it scores anyone.

use std::fmt::Display;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {reason}")]
pub struct InvalidModel {
    /// Where in the model, outermost first (e.g. "tree 3, node 5").
    pub part: String,
    pub reason: String,
}

impl InvalidModel {
    pub fn new(part: impl Display, reason: impl Into<String>) -> Self {
        Self { part: part.to_string(), reason: reason.into() }
    }

    /// The same fault, placed inside `outer` (a tree, a layer, a gate).
    pub fn within(self, outer: impl Display) -> Self {
        Self { part: format!("{outer}, {}", self.part), ..self }
    }
}
