//! Name patterns: `*` and `?` globs, case-sensitive like PostgreSQL identifiers.

use wildmatch::WildMatch;

#[derive(Debug, Clone)]
pub(crate) struct Globs(Vec<WildMatch>);

impl Globs {
    pub(crate) fn new(patterns: &[String]) -> Globs {
        Globs(patterns.iter().map(|p| WildMatch::new(p)).collect())
    }

    /// One pattern.
    pub(crate) fn one(pattern: &str) -> Globs {
        Globs(vec![WildMatch::new(pattern)])
    }

    pub(crate) fn matches(&self, s: &str) -> bool {
        self.0.iter().any(|g| g.matches(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_question_mark() {
        let g = Globs::new(&["ci-*".into(), "*.audit_?".into()]);
        assert!(g.matches("ci-42"));
        assert!(g.matches("public.audit_x"));
        assert!(!g.matches("public.audit_xy"));
        assert!(!g.matches("CI-42"));
    }
}
