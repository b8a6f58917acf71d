//! Parse, don't validate: request input becomes these types before any storage call.

use contracts::CreateTicketRequest;

/// Why a value from a request is not a valid domain value. The domain says what is wrong; the
/// HTTP layer (`error.rs`) alone decides the status each kind gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A field breaks a rule (empty, too long).
    #[error("{0}")]
    Invalid(String),
    /// The caller's identity is missing or malformed.
    #[error("{0}")]
    Identity(String),
    /// A header or part is malformed; `code` is the stable machine-readable name.
    #[error("{message}")]
    Malformed { code: &'static str, message: String },
}

impl DomainError {
    pub fn malformed(code: &'static str, message: impl Into<String>) -> Self {
        DomainError::Malformed {
            code,
            message: message.into(),
        }
    }
}

pub const TITLE_CHARS: std::ops::RangeInclusive<usize> = 3..=200;
pub const DESCRIPTION_CHARS: std::ops::RangeInclusive<usize> = 1..=5000;
pub const USER_ID_MAX_BYTES: usize = 128;
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;

/// A title of 3..=200 characters (Unicode scalar values, after trimming), no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketTitle(String);

impl TicketTitle {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let title = raw.trim();
        let chars = title.chars().count();
        if !TITLE_CHARS.contains(&chars) {
            return Err(DomainError::Invalid(format!(
                "title must be {}..{} characters, got {chars}",
                TITLE_CHARS.start(),
                TITLE_CHARS.end()
            )));
        }
        if title.chars().any(char::is_control) {
            return Err(DomainError::Invalid(
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
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let chars = raw.chars().count();
        if !DESCRIPTION_CHARS.contains(&chars) || raw.trim().is_empty() {
            return Err(DomainError::Invalid(format!(
                "description must be {}..{} characters and not blank, got {chars}",
                DESCRIPTION_CHARS.start(),
                DESCRIPTION_CHARS.end()
            )));
        }
        if raw
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(DomainError::Invalid(
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
    type Error = DomainError;

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
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.is_empty() {
            return Err(DomainError::Identity("X-User-Id header is required".into()));
        }
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
        if raw.len() > USER_ID_MAX_BYTES || !raw.chars().all(ok_char) {
            return Err(DomainError::Identity(format!(
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
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.is_empty()
            || raw.len() > IDEMPOTENCY_KEY_MAX_BYTES
            || !raw.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(DomainError::malformed(
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

pub const FILENAME_MAX_BYTES: usize = 255;
/// Stored when a client sends no usable name.
pub const FALLBACK_FILENAME: &str = "attachment";

/// An attachment's file name as clients see it again: the last path component of what the
/// client sent (`C:\\x\\a.txt` and `../../a.txt` become `a.txt`), without control characters,
/// leading dots or surrounding spaces, at most 255 bytes. Never used as the object key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentFilename(String);

impl AttachmentFilename {
    /// Sanitises rather than rejects: browsers send full paths on some platforms.
    pub fn sanitize(raw: Option<&str>) -> Self {
        let last = raw
            .unwrap_or_default()
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default();
        let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
        let cleaned = cleaned.trim().trim_start_matches('.').trim();
        let mut end = cleaned.len().min(FILENAME_MAX_BYTES);
        while !cleaned.is_char_boundary(end) {
            end -= 1;
        }
        let name = cleaned[..end].trim_end();
        Self(if name.is_empty() {
            FALLBACK_FILENAME.to_owned()
        } else {
            name.to_owned()
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Content-Disposition` for downloads: an ASCII fallback plus the exact UTF-8 name (RFC 6266).
    pub fn content_disposition(&self) -> String {
        let ascii: String = self
            .0
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut encoded = String::with_capacity(self.0.len() * 3);
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                encoded.push(char::from(b));
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
    }
}

/// A media type `type/subtype` (parameters such as `charset` kept), lower-cased type and
/// subtype; missing means `application/octet-stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType(String);

pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

impl ContentType {
    pub fn parse(raw: Option<&str>) -> Result<Self, DomainError> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(Self(DEFAULT_CONTENT_TYPE.to_owned()));
        };
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        let (essence, params) = raw.split_once(';').unwrap_or((raw, ""));
        let valid = raw.len() <= 255
            && raw.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
            && essence
                .trim()
                .split_once('/')
                .is_some_and(|(t, s)| token(t) && token(s));
        if !valid {
            return Err(DomainError::malformed(
                "invalid_content_type",
                format!(
                    "the file part's Content-Type must be a media type like text/plain, got {raw:?}"
                ),
            ));
        }
        let essence = essence.trim().to_ascii_lowercase();
        let params = params.trim();
        Ok(Self(if params.is_empty() {
            essence
        } else {
            format!("{essence}; {params}")
        }))
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
        assert!(matches!(UserId::parse(""), Err(DomainError::Identity(_))));
        assert!(UserId::parse("a:b").is_err());
        assert!(UserId::parse(&"u".repeat(129)).is_err());
    }

    #[test]
    fn filenames_lose_paths_and_control_characters() {
        let name = |raw: &str| AttachmentFilename::sanitize(Some(raw)).as_str().to_owned();
        assert_eq!(name("report.pdf"), "report.pdf");
        assert_eq!(name("../../etc/passwd"), "passwd");
        assert_eq!(name("C:\\Users\\me\\scan 1.png"), "scan 1.png");
        assert_eq!(name("a\u{0}b\r\nc.txt"), "abc.txt");
        assert_eq!(name(".bashrc"), "bashrc");
        assert_eq!(name(".."), FALLBACK_FILENAME);
        assert_eq!(name("dir/"), FALLBACK_FILENAME);
        assert_eq!(
            AttachmentFilename::sanitize(None).as_str(),
            FALLBACK_FILENAME
        );
        let long = name(&"я".repeat(200));
        assert!(long.len() <= FILENAME_MAX_BYTES && long.chars().all(|c| c == 'я'));
    }

    #[test]
    fn content_disposition_keeps_the_utf8_name() {
        let cd = AttachmentFilename::sanitize(Some("отчёт \"q\".txt")).content_disposition();
        assert_eq!(
            cd,
            "attachment; filename=\"_____ _q_.txt\"; filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82%20%22q%22.txt"
        );
    }

    #[test]
    fn content_types() {
        let ct = |raw| ContentType::parse(raw).map(|c| c.as_str().to_owned());
        assert_eq!(ct(None).unwrap(), DEFAULT_CONTENT_TYPE);
        assert_eq!(ct(Some("Image/PNG")).unwrap(), "image/png");
        assert_eq!(
            ct(Some("text/plain;charset=utf-8")).unwrap(),
            "text/plain; charset=utf-8"
        );
        assert!(ct(Some("nonsense")).is_err());
        assert!(ct(Some("text/plain\r\nX-Evil: 1")).is_err());
    }

    #[test]
    fn idempotency_key_alphabet() {
        assert!(IdempotencyKey::parse("req-1:abc").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
    }
}
