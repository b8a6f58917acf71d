//! Parse, don't validate: request input becomes these types before any storage call.

use contracts::CreateTicketRequest;

use crate::error::AppError;

pub const TITLE_CHARS: std::ops::RangeInclusive<usize> = 3..=200;
pub const DESCRIPTION_CHARS: std::ops::RangeInclusive<usize> = 1..=5000;
pub const USER_ID_MAX_BYTES: usize = 128;
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;

/// A title of 3..=200 characters (Unicode scalar values, after trimming), no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketTitle(String);

impl TicketTitle {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let title = raw.trim();
        let chars = title.chars().count();
        if !TITLE_CHARS.contains(&chars) {
            return Err(AppError::Validation(format!(
                "title must be {}..{} characters, got {chars}",
                TITLE_CHARS.start(),
                TITLE_CHARS.end()
            )));
        }
        if title.chars().any(char::is_control) {
            return Err(AppError::Validation(
                "title must not contain control characters".into(),
            ));
        }
        Ok(Self(title.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A description of 1..=5000 characters; newlines and tabs are allowed, other control characters not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketDescription(String);

impl TicketDescription {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let chars = raw.chars().count();
        if !DESCRIPTION_CHARS.contains(&chars) || raw.trim().is_empty() {
            return Err(AppError::Validation(format!(
                "description must be {}..{} characters and not blank, got {chars}",
                DESCRIPTION_CHARS.start(),
                DESCRIPTION_CHARS.end()
            )));
        }
        if raw
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(AppError::Validation(
                "description must not contain control characters other than newline and tab".into(),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    pub title: TicketTitle,
    pub description: TicketDescription,
}

impl TryFrom<CreateTicketRequest> for NewTicket {
    type Error = AppError;

    fn try_from(req: CreateTicketRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            title: TicketTitle::parse(&req.title)?,
            description: TicketDescription::parse(&req.description)?,
        })
    }
}

/// The caller, from `X-User-Id`: 1..=128 bytes of `[A-Za-z0-9._@-]`. The alphabet keeps user ids
/// safe inside Redis keys such as `idem:<user>:<key>`, where a `:` could make two users collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        if raw.is_empty() {
            return Err(AppError::Unauthorized(
                "X-User-Id header is required".into(),
            ));
        }
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
        if raw.len() > USER_ID_MAX_BYTES || !raw.chars().all(ok_char) {
            return Err(AppError::Unauthorized(format!(
                "X-User-Id must be 1..{USER_ID_MAX_BYTES} characters of [A-Za-z0-9._@-]"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Idempotency-Key`: 1..=255 bytes of visible ASCII.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        if raw.is_empty()
            || raw.len() > IDEMPOTENCY_KEY_MAX_BYTES
            || !raw.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(AppError::bad_request(
                "invalid_idempotency_key",
                format!(
                    "Idempotency-Key must be 1..{IDEMPOTENCY_KEY_MAX_BYTES} visible ASCII characters"
                ),
            ));
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
    fn title_counts_characters_not_bytes() {
        // 200 Cyrillic letters are 400 bytes and still a valid title.
        assert!(TicketTitle::parse(&"я".repeat(200)).is_ok());
        assert!(TicketTitle::parse(&"я".repeat(201)).is_err());
        assert!(TicketTitle::parse("ab").is_err());
        assert!(
            TicketTitle::parse("  ab  ").is_err(),
            "whitespace does not count"
        );
        assert_eq!(TicketTitle::parse("  abc ").unwrap().as_str(), "abc");
        assert!(TicketTitle::parse("ab\u{7}c").is_err());
    }

    #[test]
    fn description_bounds() {
        assert!(TicketDescription::parse("x").is_ok());
        assert!(TicketDescription::parse("").is_err());
        assert!(TicketDescription::parse("   ").is_err());
        assert!(TicketDescription::parse(&"€".repeat(5000)).is_ok());
        assert!(TicketDescription::parse(&"€".repeat(5001)).is_err());
        assert!(TicketDescription::parse("line1\nline2\ttab").is_ok());
        assert!(TicketDescription::parse("nul\0").is_err());
    }

    #[test]
    fn user_id_alphabet() {
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(matches!(UserId::parse(""), Err(AppError::Unauthorized(_))));
        assert!(UserId::parse("a:b").is_err());
        assert!(UserId::parse(&"u".repeat(129)).is_err());
    }

    #[test]
    fn idempotency_key_alphabet() {
        assert!(IdempotencyKey::parse("req-1:abc").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
    }
}
