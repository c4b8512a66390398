//! A portal's subdomain: one DNS label (P4).

use super::InvalidValue;

/// Lower-case letters, digits and hyphens, 1-63 characters, not starting or
/// ending with a hyphen. Unique across all realms (enforced by the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subdomain(String);

impl Subdomain {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.is_empty() || raw.len() > 63 {
            return Err(InvalidValue::new("must be 1-63 characters"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(InvalidValue::new(
                "may contain only lower-case letters, digits and hyphens",
            ));
        }
        if raw.starts_with('-') || raw.ends_with('-') {
            return Err(InvalidValue::new("must not start or end with a hyphen"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p4_accepts_dns_labels() {
        for ok in ["a", "acme", "acme-eu-1", "9lives", &"a".repeat(63)] {
            assert!(Subdomain::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn p4_refuses_what_is_not_a_dns_label() {
        for bad in [
            "",
            "-acme",
            "acme-",
            "Acme",
            "ac_me",
            "ac.me",
            "acmé",
            " acme",
            &"a".repeat(64),
        ] {
            assert!(Subdomain::parse(bad).is_err(), "{bad:?}");
        }
    }
}
