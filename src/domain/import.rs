//! W3: the shape of one bulk import. What each user may be is decided by
//! the one grant function (`admin_rules::Grantor::authorize`), row by row;
//! this holds only what is about the batch as a whole.

use std::collections::HashMap;

use super::{Email, InvalidValue};

/// At most this many users per ImportUsers call.
pub const MAX_USERS_PER_IMPORT: usize = 1000;

/// The number of users of one call, 1 to [`MAX_USERS_PER_IMPORT`].
pub fn check_batch_size(users: usize) -> Result<(), InvalidValue> {
    if (1..=MAX_USERS_PER_IMPORT).contains(&users) {
        Ok(())
    } else {
        Err(InvalidValue::new(format!(
            "must hold 1 to {MAX_USERS_PER_IMPORT} users (got {users})"
        )))
    }
}

/// The first email that appears twice in a batch, any case: `(first index,
/// repeated index)`. Emails are unique per realm, so such a batch cannot
/// be imported whole.
pub fn first_repeated_email<'a>(
    emails: impl IntoIterator<Item = &'a Email>,
) -> Option<(usize, usize)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, email) in emails.into_iter().enumerate() {
        if let Some(first) = seen.insert(email.normalized(), index) {
            return Some((first, index));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emails(raw: &[&str]) -> Vec<Email> {
        raw.iter().map(|e| Email::parse(e).unwrap()).collect()
    }

    #[test]
    fn w3_batch_holds_one_to_a_thousand_users() {
        assert!(check_batch_size(0).is_err());
        assert!(check_batch_size(1).is_ok());
        assert!(check_batch_size(1000).is_ok());
        assert!(check_batch_size(1001).is_err());
    }

    #[test]
    fn w3_repeated_email_is_found_in_any_case() {
        let batch = emails(&["a@x.example", "b@x.example", "B@X.example", "a@x.example"]);
        assert_eq!(first_repeated_email(&batch), Some((1, 2)));
        assert_eq!(
            first_repeated_email(&emails(&["a@x.example", "b@x.example"])),
            None
        );
    }
}
