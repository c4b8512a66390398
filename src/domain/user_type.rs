//! The four user types a membership can carry.

/// A person's role in one portal. Ordered from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UserType {
    Learner,
    Instructor,
    Manager,
    Admin,
}

impl UserType {
    pub const ALL: [UserType; 4] = [
        UserType::Learner,
        UserType::Instructor,
        UserType::Manager,
        UserType::Admin,
    ];

    /// The stable name kept in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Learner => "learner",
            UserType::Instructor => "instructor",
            UserType::Manager => "manager",
            UserType::Admin => "admin",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for t in UserType::ALL {
            assert_eq!(UserType::from_stored(t.as_str()), Some(t));
        }
        assert_eq!(UserType::from_stored("owner"), None);
    }
}
