//! A login email, unique per realm regardless of case.

use super::InvalidValue;

/// A plausible address: something@domain, at most 254 characters. The
/// original spelling is kept for display; `normalized` is what uniqueness
/// compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.len() > 254 {
            return Err(InvalidValue::new("must be 1-254 characters"));
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(InvalidValue::new("must contain '@'"));
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty()
            || !domain_ok
            || trimmed.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(InvalidValue::new("is not an email address"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_normalizes_case() {
        let email = Email::parse(" Ana.Silva@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Ana.Silva@Example.COM");
        assert_eq!(email.normalized(), "ana.silva@example.com");
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@",
            "ana@example",
            "a b@x.io",
            "ana@x..io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
