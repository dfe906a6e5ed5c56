//! pg_hba.conf lines: the defaults plus per-role rules for testing upstream auth methods.

/// How the server authenticates a matching connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ScramSha256,
    /// Needs the role's password stored as MD5 (see [`crate::PasswordStorage::Md5`]); with a
    /// SCRAM-stored password the server silently upgrades to SCRAM.
    Md5,
    /// Cleartext password.
    Password,
    Trust,
    Reject,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Md5 => "md5",
            AuthMethod::Password => "password",
            AuthMethod::Trust => "trust",
            AuthMethod::Reject => "reject",
        }
    }
}

/// Which connections a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// TCP, with or without TLS.
    Host,
    /// TCP with TLS only.
    HostSsl,
    /// TCP without TLS only.
    HostNoSsl,
    /// Unix socket.
    Local,
}

impl ConnKind {
    fn as_str(self) -> &'static str {
        match self {
            ConnKind::Host => "host",
            ConnKind::HostSsl => "hostssl",
            ConnKind::HostNoSsl => "hostnossl",
            ConnKind::Local => "local",
        }
    }
}

/// One pg_hba.conf line. Rules given in [`crate::Options::hba`] come before the defaults, so
/// they win (the server uses the first matching line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRule {
    pub kind: ConnKind,
    pub database: String,
    pub user: String,
    pub method: AuthMethod,
}

impl HbaRule {
    /// A TCP rule for one role on every database.
    pub fn for_user(user: &str, method: AuthMethod) -> Self {
        HbaRule {
            kind: ConnKind::Host,
            database: "all".to_owned(),
            user: user.to_owned(),
            method,
        }
    }

    /// The rule with its kind replaced.
    pub fn kind(mut self, kind: ConnKind) -> Self {
        self.kind = kind;
        self
    }

    fn lines(&self) -> Vec<String> {
        let head = format!(
            "{:<10} {:<16} {:<16}",
            self.kind.as_str(),
            self.database,
            self.user
        );
        if self.kind == ConnKind::Local {
            vec![format!("{head} {}", self.method.as_str())]
        } else {
            ["127.0.0.1/32", "::1/128"]
                .iter()
                .map(|addr| format!("{head} {addr:<16} {}", self.method.as_str()))
                .collect()
        }
    }
}

/// The whole file: caller rules first, then SCRAM for everything else.
pub fn render(rules: &[HbaRule]) -> String {
    let defaults = [
        HbaRule {
            kind: ConnKind::Local,
            database: "all".to_owned(),
            user: "all".to_owned(),
            method: AuthMethod::ScramSha256,
        },
        HbaRule::for_user("all", AuthMethod::ScramSha256),
    ];
    let mut out = String::from("# written by drawbridge-localpg\n");
    for rule in rules.iter().chain(defaults.iter()) {
        for line in rule.lines() {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_rules_precede_defaults() {
        let text = render(&[HbaRule::for_user("md5_user", AuthMethod::Md5)]);
        let md5 = text.find("md5_user").unwrap();
        let scram_all = text
            .find("all              all              127.0.0.1/32")
            .unwrap();
        assert!(md5 < scram_all, "{text}");
        assert!(text.contains("local      all              all              scram-sha-256"));
    }

    #[test]
    fn hostssl_rule_renders_both_loopbacks() {
        let rule = HbaRule::for_user("tls_user", AuthMethod::Password).kind(ConnKind::HostSsl);
        let lines = rule.lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("hostssl"));
        assert!(lines[1].contains("::1/128"));
        assert!(lines[1].ends_with("password"));
    }
}
