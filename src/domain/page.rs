//! Page sizes of list RPCs (AIP-158): 0 means the default, more than the
//! maximum is coerced down, negative is refused.

use super::InvalidValue;

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u64);

impl PageSize {
    pub fn parse(requested: i32) -> Result<Self, InvalidValue> {
        match requested {
            n if n < 0 => Err(InvalidValue::new("must not be negative")),
            0 => Ok(Self(DEFAULT_PAGE_SIZE)),
            n => Ok(Self((n as u64).min(MAX_PAGE_SIZE))),
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_default_and_large_is_coerced() {
        assert_eq!(PageSize::parse(0).unwrap().get(), 50);
        assert_eq!(PageSize::parse(7).unwrap().get(), 7);
        assert_eq!(PageSize::parse(501).unwrap().get(), 500);
        assert_eq!(PageSize::parse(i32::MAX).unwrap().get(), 500);
    }

    #[test]
    fn negative_is_refused() {
        assert!(PageSize::parse(-1).is_err());
    }
}
