//! The rule for space and user names, checked by the service before a name is stored.

use super::error::ServiceError;

type Result<T> = std::result::Result<T, ServiceError>;

pub use crate::model::MAX_ACCOUNT_NAME;

/// Space and user names: 1 to 64 ASCII letters, digits, `.`, `_` or `-`,
/// starting with a letter or digit, without `..`, and not a name Windows
/// reserves for devices (`CON`, `NUL`, `COM1`…): names that travel in URLs,
/// logs, shells and file names unchanged on every platform.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    let rule = format!("use 1 to {MAX_ACCOUNT_NAME} letters, digits, '.', '_' or '-', starting with a letter or digit");
    let bad = |why: String| Err(ServiceError::BadRequest(format!("bad {what} name {name:?}: {why}")));
    if name.is_empty() || name.len() > MAX_ACCOUNT_NAME {
        return bad(format!("{} bytes; {rule}", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(format!("{c:?} is not allowed; {rule}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad(rule);
    }
    if name.contains("..") {
        return bad(format!("'..' is not allowed; {rule}"));
    }
    let stem = name.split('.').next().unwrap_or(name).to_ascii_uppercase();
    let device = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    if device {
        return bad("a device name on Windows: pick another".into());
    }
    Ok(())
}
