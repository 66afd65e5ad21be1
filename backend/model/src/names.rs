//! Parsed values: once constructed, a `Slug` or `Email` is valid.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused. The message names the rule and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} characters long; the limit is {max}")]
    TooLong { what: &'static str, len: usize, max: usize },
    #[error(
        "{what} {value:?} is not valid: use lowercase letters a-z, digits and '-', starting with a letter and not ending with '-' (for example \"data-platform\")"
    )]
    BadSlug { what: &'static str, value: String },
    #[error("{value:?} is not an email address: expected the form name@example.com")]
    BadEmail { value: String },
}

/// A URL-safe key for tenants and projects: `^[a-z][a-z0-9-]{0,62}$`, not ending in `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "data-platform"))]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    pub const MAX_LEN: usize = 63;

    /// Parses a slug; `what` names the field in the error ("tenant slug", "project key").
    pub fn parse_named(value: &str, what: &'static str) -> Result<Self, NameError> {
        if value.is_empty() {
            return Err(NameError::Empty { what });
        }
        let len = value.chars().count();
        if len > Self::MAX_LEN {
            return Err(NameError::TooLong { what, len, max: Self::MAX_LEN });
        }
        let mut chars = value.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !first_ok || !rest_ok || value.ends_with('-') {
            return Err(NameError::BadSlug { what, value: value.to_owned() });
        }
        Ok(Self(value.to_owned()))
    }

    pub fn parse(value: &str) -> Result<Self, NameError> {
        Self::parse_named(value, "slug")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An email address, trimmed and lower-cased: the login name of a password user.
///
/// The check is deliberately structural (one `@`, a non-empty local part, a dotted or `localhost`
/// domain, no whitespace); deliverability is the mail server's business.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "ada@example.com"))]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(value: &str) -> Result<Self, NameError> {
        let v = value.trim().to_lowercase();
        if v.is_empty() {
            return Err(NameError::Empty { what: "email" });
        }
        let len = v.chars().count();
        if len > Self::MAX_LEN {
            return Err(NameError::TooLong { what: "email", len, max: Self::MAX_LEN });
        }
        let bad = || NameError::BadEmail { value: value.to_owned() };
        let (local, domain) = v.split_once('@').ok_or_else(bad)?;
        let domain_ok = !domain.is_empty()
            && !domain.contains('@')
            && (domain.contains('.') || domain == "localhost")
            && !domain.starts_with('.')
            && !domain.ends_with('.');
        if local.is_empty() || !domain_ok || v.chars().any(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Self(v))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A human-readable name (tenant, project, user): trimmed, 1..=120 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "Data Platform"))]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_LEN: usize = 120;

    pub fn parse_named(value: &str, what: &'static str) -> Result<Self, NameError> {
        let v = value.trim();
        if v.is_empty() {
            return Err(NameError::Empty { what });
        }
        let len = v.chars().count();
        if len > Self::MAX_LEN {
            return Err(NameError::TooLong { what, len, max: Self::MAX_LEN });
        }
        Ok(Self(v.chars().filter(|c| !c.is_control()).collect()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DisplayName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_named(&s, "name").map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_documented_rule() {
        for ok in ["a", "data-platform", "team42", "a-b-c"] {
            assert_eq!(Slug::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "-a", "a-", "Data", "1abc", "a_b", "a b", "é"] {
            assert!(Slug::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(Slug::parse(&"a".repeat(64)), Err(NameError::TooLong { len: 64, .. })));
    }

    #[test]
    fn slug_error_says_how_to_fix_it() {
        let msg = Slug::parse_named("Data_Platform", "project key").unwrap_err().to_string();
        assert!(msg.contains("project key"), "{msg}");
        assert!(msg.contains("lowercase"), "{msg}");
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        assert_eq!(Email::parse("root@localhost").unwrap().as_str(), "root@localhost");
        for bad in ["", "ada", "@example.com", "ada@", "ada@example", "a b@example.com", "a@b@c.com", "a@.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn deserialising_an_invalid_slug_fails_with_the_rule() {
        let err = serde_json::from_str::<Slug>("\"Bad Slug\"").unwrap_err().to_string();
        assert!(err.contains("lowercase"), "{err}");
    }
}
