//! Human-readable names: trimmed, 1-200 characters (P4).

use super::InvalidValue;

const MAX_CHARS: usize = 200;

fn parse_name(raw: &str) -> Result<String, InvalidValue> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(InvalidValue::new("must not be empty"));
    }
    if trimmed.chars().count() > MAX_CHARS {
        return Err(InvalidValue::new("must be at most 200 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(InvalidValue::new("must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// A portal's or realm's display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalName(String);

impl PortalName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        parse_name(raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        parse_name(raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p4_names_are_trimmed() {
        assert_eq!(PortalName::parse("  Acme  ").unwrap().as_str(), "Acme");
    }

    #[test]
    fn p4_empty_or_blank_names_are_refused() {
        assert!(PortalName::parse("").is_err());
        assert!(PortalName::parse("   ").is_err());
    }

    #[test]
    fn p4_names_longer_than_200_characters_are_refused() {
        assert!(PortalName::parse(&"é".repeat(200)).is_ok());
        assert!(PortalName::parse(&"é".repeat(201)).is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(DisplayName::parse("a\u{0}b").is_err());
    }
}
