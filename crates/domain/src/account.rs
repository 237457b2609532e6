//! Account input types: e-mail addresses, passwords, display names, and the
//! account status. Parsed once at the edge; a value that exists is valid.

use serde::{Deserialize, Serialize};

/// Why an input value was refused; `field` is the JSON field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: std::borrow::Cow<'static, str>,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<std::borrow::Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A lower-cased, syntactically plausible e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, FieldError> {
        let s = raw.trim().to_lowercase();
        let bad = |m: &str| Err(FieldError::new("email", m));
        if s.is_empty() {
            return bad("is required");
        }
        if s.len() > 254 {
            return bad("must be at most 254 characters");
        }
        let Some((local, host)) = s.split_once('@') else {
            return bad("must be an e-mail address");
        };
        let host_ok = host.contains('.')
            && !host.starts_with('.')
            && !host.ends_with('.')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._%+-'".contains(c));
        if !host_ok || !local_ok {
            return bad("must be an e-mail address");
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy of SPEC §3 (at least 12 characters, at
/// most 1024, not on the common-password list). Never printed.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

const COMMON_PASSWORDS: &str = include_str!("../data/common_passwords.txt");

impl Password {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 1024;

    pub fn parse(raw: &str) -> Result<Password, FieldError> {
        let n = raw.chars().count();
        let bad = |m: &str| Err(FieldError::new("password", m));
        if n < Self::MIN_CHARS {
            return bad("must be at least 12 characters");
        }
        if n > Self::MAX_CHARS {
            return bad("must be at most 1024 characters");
        }
        let lowered = raw.to_lowercase();
        if COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .any(|c| !c.is_empty() && !c.starts_with('#') && c == lowered)
        {
            return bad("is too common; choose a longer, less guessable passphrase");
        }
        if raw.chars().all(|c| c == raw.chars().next().unwrap_or(' ')) {
            return bad("must not repeat a single character");
        }
        Ok(Password(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A person's display name: 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(field: &'static str, raw: &str) -> Result<PersonName, FieldError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        if s.chars().count() > 200 {
            return Err(FieldError::new(field, "must be at most 200 characters"));
        }
        if s.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "must not contain control characters",
            ));
        }
        Ok(PersonName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Account status: only `active` accounts may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Pending,
    Disabled,
}

impl UserStatus {
    pub const ALL: [UserStatus; 3] = [
        UserStatus::Active,
        UserStatus::Pending,
        UserStatus::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Pending => "pending",
            UserStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<UserStatus> {
        UserStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Only an active account may sign in or hold a live session.
    pub fn is_active(self) -> bool {
        self == UserStatus::Active
    }
}

crate::states::decode_from_string!(UserStatus, "user status");

impl std::fmt::Display for UserStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sign-up policy (`AMAL_SIGNUP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupPolicy {
    Invite,
    Open,
    Closed,
}

impl SignupPolicy {
    pub fn parse(s: &str) -> Option<SignupPolicy> {
        match s {
            "invite" => Some(SignupPolicy::Invite),
            "open" => Some(SignupPolicy::Open),
            "closed" => Some(SignupPolicy::Closed),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Dr.Amal@Clinic.Example ").unwrap().as_str(),
            "dr.amal@clinic.example"
        );
        for bad in [
            "",
            "no-at",
            "a@b",
            "a@.x",
            "x'; DROP TABLE users;--@a.b",
            "<script>@a.b",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("password1234").is_err());
        assert!(Password::parse("aaaaaaaaaaaaaaaa").is_err());
        assert!(Password::parse("correct horse battery staple").is_ok());
        assert_eq!(
            format!(
                "{:?}",
                Password::parse("correct horse battery staple").unwrap()
            ),
            "Password(***)"
        );
    }

    #[test]
    fn names() {
        assert!(PersonName::parse("name", "  ").is_err());
        assert!(PersonName::parse("name", "a\u{0}b").is_err());
        assert_eq!(
            PersonName::parse("name", " Amal ").unwrap().as_str(),
            "Amal"
        );
    }
}

/// The longest a run of failed sign-ins makes an account wait (15 min).
pub const SIGNIN_DELAY_CAP_SECS: u64 = 900;

/// How long an account waits after its last failed sign-in before the next
/// attempt from an IP it has not signed in from: nothing while it has had
/// fewer than `free` failures in the window, then 1 s, doubling with each
/// further failure, at most `cap_secs`. A growing delay, never a lockout.
pub fn signin_delay_secs(failures: u32, free: u32, cap_secs: u64) -> u64 {
    match failures.checked_sub(free) {
        None => 0,
        Some(over) => 1u64.checked_shl(over).unwrap_or(u64::MAX).min(cap_secs),
    }
}

#[cfg(test)]
mod signin_delay_tests {
    use super::*;

    #[test]
    fn the_delay_grows_with_each_failure_past_the_free_ones_and_stops_at_the_cap() {
        assert_eq!(signin_delay_secs(0, 5, 900), 0);
        assert_eq!(signin_delay_secs(4, 5, 900), 0);
        assert_eq!(signin_delay_secs(5, 5, 900), 1);
        assert_eq!(signin_delay_secs(6, 5, 900), 2);
        assert_eq!(signin_delay_secs(7, 5, 900), 4);
        assert_eq!(signin_delay_secs(14, 5, 900), 512);
        assert_eq!(signin_delay_secs(15, 5, 900), 900);
        assert_eq!(signin_delay_secs(u32::MAX, 0, 900), 900);
    }
}
