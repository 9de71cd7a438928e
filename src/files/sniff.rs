//! Exact media types: the declared type is parsed (type/subtype compared exactly, no stray
//! parameters), and the content's magic bytes must agree; text must be valid UTF-8.

/// The kinds of file Colloquy can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Png,
    Jpeg,
    Gif,
    Webp,
    Pdf,
    Text,
    Markdown,
    Csv,
    Json,
    Docx,
    Xlsx,
    Pptx,
}

const ALL: [Kind; 12] = [
    Kind::Png,
    Kind::Jpeg,
    Kind::Gif,
    Kind::Webp,
    Kind::Pdf,
    Kind::Text,
    Kind::Markdown,
    Kind::Csv,
    Kind::Json,
    Kind::Docx,
    Kind::Xlsx,
    Kind::Pptx,
];

impl Kind {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Pdf => "application/pdf",
            Self::Text => "text/plain",
            Self::Markdown => "text/markdown",
            Self::Csv => "text/csv",
            Self::Json => "application/json",
            Self::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Self::Pptx => {
                "application/vnd.openxmlformats-officedocument.presentationml.presentation"
            }
        }
    }

    /// The kind of an exact, lowercase `type/subtype`.
    pub fn of(essence: &str) -> Option<Self> {
        ALL.into_iter().find(|k| k.mime() == essence)
    }

    pub fn is_text(self) -> bool {
        matches!(self, Self::Text | Self::Markdown | Self::Csv | Self::Json)
    }

    pub fn is_image(self) -> bool {
        matches!(self, Self::Png | Self::Jpeg | Self::Gif | Self::Webp)
    }

    fn is_office(self) -> bool {
        matches!(self, Self::Docx | Self::Xlsx | Self::Pptx)
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpg",
            Self::Gif => "gif",
            Self::Webp => "webp",
            Self::Pdf => "pdf",
            Self::Text => "txt",
            Self::Markdown => "md",
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Docx => "docx",
            Self::Xlsx => "xlsx",
            Self::Pptx => "pptx",
        }
    }
}

/// Parses a declared `Content-Type`. Only `charset=utf-8` is allowed as a parameter, and
/// only on text: `image/jpeg; x-malware` is not an image/jpeg.
pub fn parse_declared(value: &str) -> Option<Kind> {
    let mut parts = value.split(';');
    let essence = parts.next()?.trim().to_ascii_lowercase();
    let kind = Kind::of(&essence)?;
    for param in parts {
        let (k, v) = param.split_once('=')?;
        let v = v.trim().trim_matches('"');
        let charset_ok =
            k.trim().eq_ignore_ascii_case("charset") && v.eq_ignore_ascii_case("utf-8");
        if !(charset_ok && kind.is_text()) {
            return None;
        }
    }
    Some(kind)
}

/// Do the first bytes agree with the declared kind?
pub fn head_matches(kind: Kind, head: &[u8]) -> bool {
    let sniffed = infer::get(head).map(|t| t.mime_type());
    if kind.is_text() {
        // Text has no signature; anything that has one is not text.
        return sniffed.is_none_or(|m| m.starts_with("text/"));
    }
    if kind.is_office() {
        // OOXML is a zip; infer names the flavour when the part names come early enough.
        return sniffed == Some(kind.mime()) || sniffed == Some("application/zip");
    }
    sniffed == Some(kind.mime())
}

/// Validates UTF-8 across chunk boundaries.
#[derive(Debug, Default)]
pub struct Utf8Check {
    carry: Vec<u8>,
    bad: bool,
}

impl Utf8Check {
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.bad {
            return;
        }
        let joined;
        let data = if self.carry.is_empty() {
            chunk
        } else {
            joined = [self.carry.as_slice(), chunk].concat();
            &joined
        };
        match std::str::from_utf8(data) {
            Ok(_) => self.carry.clear(),
            // An invalid sequence, or an incomplete one that is not at the end.
            Err(e) if e.error_len().is_some() => self.bad = true,
            Err(e) => self.carry = data[e.valid_up_to()..].to_vec(),
        }
    }

    pub fn is_valid(&self) -> bool {
        !self.bad && self.carry.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_are_parsed_exactly() {
        assert_eq!(parse_declared("image/png"), Some(Kind::Png));
        assert_eq!(parse_declared("IMAGE/PNG"), Some(Kind::Png));
        assert_eq!(
            parse_declared("text/plain; charset=utf-8"),
            Some(Kind::Text)
        );
        assert_eq!(
            parse_declared("text/plain; charset=\"UTF-8\""),
            Some(Kind::Text)
        );
        assert_eq!(parse_declared("image/jpeg; x-malware"), None);
        assert_eq!(parse_declared("image/jpeg; charset=utf-8"), None);
        assert_eq!(parse_declared("image/jpegx"), None);
        assert_eq!(parse_declared("image/"), None);
        assert_eq!(parse_declared("application/x-msdownload"), None);
        assert_eq!(parse_declared("text/plain; charset=latin1"), None);
    }

    #[test]
    fn magic_bytes_must_agree() {
        let png = &[
            0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d,
        ][..];
        assert!(head_matches(Kind::Png, png));
        assert!(!head_matches(Kind::Text, png), "a PNG is not text");
        assert!(
            !head_matches(Kind::Png, b"MZ\x90\x00\x03\x00\x00\x00"),
            "an executable is not a PNG"
        );
        assert!(head_matches(Kind::Text, b"plain words"));
        assert!(head_matches(Kind::Pdf, b"%PDF-1.7\n"));
    }

    #[test]
    fn utf8_across_chunks() {
        let text = "héllo wörld ✓".as_bytes();
        for split in 0..text.len() {
            let mut c = Utf8Check::default();
            c.feed(&text[..split]);
            c.feed(&text[split..]);
            assert!(c.is_valid(), "split at {split}");
        }
        let mut c = Utf8Check::default();
        c.feed(&[0xff, 0xfe]);
        assert!(!c.is_valid());
        let mut c = Utf8Check::default();
        c.feed(&[0xe2, 0x9c]);
        assert!(!c.is_valid(), "truncated at the end");
    }
}
