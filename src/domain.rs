//! Domain newtypes that can only hold valid values.

use crate::error::ErrorCode;
use std::fmt;

use crate::error::Error;

/// A phone number in E.164 form: `+` and 8-15 digits. Accepts what people and providers send:
/// spaces, dashes, brackets, a `whatsapp:` prefix, a leading `00`, or bare digits (as Meta sends).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parse and normalise.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let s = input.trim();
        let s = s.strip_prefix("whatsapp:").unwrap_or(s).trim();
        let s = s
            .strip_prefix("00")
            .map(|r| format!("+{r}"))
            .unwrap_or_else(|| s.to_string());
        let mut digits = String::with_capacity(16);
        for (i, c) in s.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '(' | ')' | '.' => {}
                _ => {
                    return Err(Error::invalid(
                        ErrorCode::InvalidPhone,
                        format!("`{input}` is not a phone number"),
                    ));
                }
            }
        }
        if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
            return Err(Error::invalid(
                ErrorCode::InvalidPhone,
                format!(
                    "`{input}` is not an international phone number (+ country code and 8-15 digits)"
                ),
            ));
        }
        Ok(Self(format!("+{digits}")))
    }

    /// `+2348012345678`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits only, as Meta's Cloud API writes numbers: `2348012345678`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.0)
    }
}

/// A school's student ID, canonical: upper case, no whitespace (`gfa/24/ 001` -> `GFA/24/001`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StudentId(String);

impl StudentId {
    /// Parse and canonicalise.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let canonical: String = input
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_uppercase)
            .collect();
        let ok = !canonical.is_empty()
            && canonical.len() <= 64
            && canonical
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
        if !ok {
            return Err(Error::invalid(
                ErrorCode::InvalidStudentId,
                format!(
                    "`{input}` is not a student ID (letters, digits, / - _ . and at most 64 characters)"
                ),
            ));
        }
        Ok(Self(canonical))
    }

    /// The canonical form, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StudentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StudentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StudentId({})", self.0)
    }
}

/// A tenant slug, the seed's `schema_name`: lower-case letters, digits, `-` and `_`, 1-63 long,
/// starting with a letter.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SchemaName(String);

impl SchemaName {
    /// Parse; the slug is case-insensitive and stored lower-case.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let s = input.trim().to_ascii_lowercase();
        let ok = (1..=63).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            return Err(Error::invalid(
                ErrorCode::InvalidSchemaName,
                format!(
                    "`{input}` is not a tenant schema name (a-z, 0-9, - and _, starting with a letter, at most 63)"
                ),
            ));
        }
        Ok(Self(s))
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A student PIN: 4 to 8 digits. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// Parse, ignoring surrounding and inner spaces.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let s: String = input.chars().filter(|c| !c.is_whitespace()).collect();
        if !(4..=8).contains(&s.len()) || !s.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::invalid(
                ErrorCode::InvalidPin,
                "a PIN is 4 to 8 digits",
            ));
        }
        Ok(Self(s))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_normalise() {
        for input in [
            "+234 801 234 5678",
            "whatsapp:+2348012345678",
            "2348012345678",
            "00234-801-234-5678",
            "+234 (801) 234.5678",
        ] {
            assert_eq!(
                PhoneNumber::parse(input).unwrap().as_str(),
                "+2348012345678",
                "{input}"
            );
        }
        assert_eq!(
            PhoneNumber::parse("+2348012345678").unwrap().digits(),
            "2348012345678"
        );
        for bad in [
            "",
            "abc",
            "+12",
            "08012345678",
            "+234801234567890123",
            "+234 801 x",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn student_ids_canonicalise() {
        assert_eq!(
            StudentId::parse(" gfa/24/ 001 ").unwrap().as_str(),
            "GFA/24/001"
        );
        assert!(StudentId::parse("").is_err());
        assert!(StudentId::parse("robert'); drop table").is_err());
        assert!(StudentId::parse(&"A".repeat(65)).is_err());
    }

    #[test]
    fn schema_names_and_pins() {
        assert_eq!(SchemaName::parse("Demo").unwrap().as_str(), "demo");
        assert!(SchemaName::parse("1demo").is_err());
        assert!(SchemaName::parse("de mo").is_err());
        assert_eq!(Pin::parse(" 12 34 ").unwrap().as_str(), "1234");
        assert!(Pin::parse("123").is_err());
        assert!(Pin::parse("12a4").is_err());
        assert_eq!(
            format!("{:?}", Pin::parse("1234").unwrap()),
            "Pin([redacted])"
        );
    }
}
