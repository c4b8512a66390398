//! A realm's plan decides whether the public API exists for it (P5, K1).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Essentials,
    Professional,
    Enterprise,
}

impl Plan {
    pub const ALL: [Plan; 3] = [Plan::Essentials, Plan::Professional, Plan::Enterprise];

    /// "A API está disponível dependendo do seu plano" (P5): the entry plan
    /// has no API.
    pub fn includes_api(self) -> bool {
        !matches!(self, Plan::Essentials)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Essentials => "essentials",
            Plan::Professional => "professional",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn from_stored(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p5_only_the_entry_plan_lacks_the_api() {
        assert!(!Plan::Essentials.includes_api());
        assert!(Plan::Professional.includes_api());
        assert!(Plan::Enterprise.includes_api());
    }
}
