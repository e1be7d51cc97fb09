//! Why the server cannot start with a setting it was given (a certificate, a key set, a FHIR
//! server's URL), naming the setting: refused before anything listens.

use std::fmt::Display;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct SettingError {
    pub setting: String,
    pub reason: String,
}

impl SettingError {
    pub fn new(setting: impl Display, reason: impl Display) -> Self {
        Self { setting: setting.to_string(), reason: reason.to_string() }
    }

    /// A function turning any error met reading `setting` into this.
    pub(crate) fn at<E: Display>(setting: impl Display) -> impl Fn(E) -> SettingError {
        let setting = setting.to_string();
        move |e| SettingError::new(&setting, e)
    }
}
